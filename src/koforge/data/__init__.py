"""koforge.data"""
