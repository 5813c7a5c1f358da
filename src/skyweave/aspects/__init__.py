"""skyweave.aspects"""
