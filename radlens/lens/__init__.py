"""radlens.lens"""
