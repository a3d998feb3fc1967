"""Helpers with the names Duck gives them."""
