"""Data: corpus sources, tokenizers, binarized token arrays, `janus data prepare`, masking, batching."""
