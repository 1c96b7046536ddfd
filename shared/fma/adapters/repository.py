"""The DynamoDB repository: one object implementing every metadata port."""

from __future__ import annotations

from fma.adapters.dynamo_models import configure_table
from fma.adapters.repo_buffers import BufferRepository
from fma.adapters.repo_enrollment import EnrollmentRepository
from fma.adapters.repo_experiments import ExperimentRepository
from fma.adapters.repo_failures import FailureRepository
from fma.adapters.repo_idempotency import IdempotencyRepository
from fma.adapters.repo_lifecycle import LifecycleRepository, SweepRepository
from fma.adapters.repo_registry import LineageRepository, RegistryRepository
from fma.adapters.repo_rounds import RoundRepository
from fma.adapters.repo_tokens import TokenRepository
from fma.adapters.repo_trouble import TroubleRepository


class DynamoRepository(TokenRepository, EnrollmentRepository, ExperimentRepository,
                       RoundRepository, LifecycleRepository, SweepRepository,
                       FailureRepository, IdempotencyRepository, RegistryRepository, LineageRepository,
                       BufferRepository, TroubleRepository):
    """Binds the pynamodb models to `table_name` (and a local endpoint) on construction."""

    def __init__(self, table_name: str, region: str = "us-east-1", host: str | None = None):
        configure_table(table_name, region, host)
        self.table_name = table_name
