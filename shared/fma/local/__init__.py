"""Local mode: the Lambda handlers on moto's server, with no AWS account."""
