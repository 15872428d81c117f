"""koforge.report"""
