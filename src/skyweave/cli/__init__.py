"""skyweave.cli"""
