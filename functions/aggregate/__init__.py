"""The aggregate Lambda function."""
