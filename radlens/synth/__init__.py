"""radlens.synth"""
