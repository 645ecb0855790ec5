"""radlens.io"""
