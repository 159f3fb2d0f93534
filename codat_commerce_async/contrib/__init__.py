"""Optional integrations that need extra packages (each names its extra)."""
