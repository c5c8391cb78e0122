"""Importers that map other systems' exports onto Order3 records."""
