"""koforge.embeddings"""
