"""skyweave.authoring"""
