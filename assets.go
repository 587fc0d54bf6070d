// Package ilmweb holds the files other packages embed from the repository root.
package ilmweb

import _ "embed"

// The tiny SentencePiece tokenizer used by synthetic checkpoints (see testdata/tokenizer/README.md).
var (
	//go:embed testdata/tokenizer/tiny.model
	TinyTokenizerModel []byte
	//go:embed testdata/tokenizer/tokenizer_config.json
	TinyTokenizerConfig []byte
)
