"""radlens.encoders"""
