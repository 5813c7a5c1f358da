"""skyweave.controller"""
