"""Products, variants (the SKUs) and certifications."""
