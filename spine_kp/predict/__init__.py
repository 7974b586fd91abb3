"""Study folder -> predictions: network inference, decoding, records, batch runner (used by CLI and validation)."""
