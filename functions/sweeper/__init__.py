"""The sweeper Lambda function."""
