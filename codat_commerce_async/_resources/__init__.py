"""The operations, grouped as Codat groups them."""
