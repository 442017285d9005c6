"""Data: corpus sources, the SentencePiece tokenizer, binarized token arrays, `janus data prepare`."""
