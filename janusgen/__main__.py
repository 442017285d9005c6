from janusgen.cli import main

raise SystemExit(main())
