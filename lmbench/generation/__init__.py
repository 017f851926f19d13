"""Generating text with a trained model: decoding strategies (decoding) and BLEU (bleu)."""
