"""An independent float64 NumPy reference for the recurrent networks."""
