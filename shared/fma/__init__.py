"""FMA: serverless federated model aggregation."""

__version__ = "0.1.0"
