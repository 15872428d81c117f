"""koforge.tokenizers"""
