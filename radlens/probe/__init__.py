"""radlens.probe"""
