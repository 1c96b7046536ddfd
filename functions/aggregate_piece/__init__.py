"""The aggregate_piece Lambda function: one child of a fanout Map."""
