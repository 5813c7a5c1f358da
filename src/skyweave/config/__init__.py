"""skyweave.config"""
