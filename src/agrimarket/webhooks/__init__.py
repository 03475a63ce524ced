"""Marketplace pushes: verified over the raw body, kept once in the inbox, handed to the order pipeline."""
