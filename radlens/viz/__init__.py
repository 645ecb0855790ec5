"""radlens.viz"""
