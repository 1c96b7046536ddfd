"""The metadata port over a transactional row store: tokens, experiments and clients.

This is the embedded connectors' implementation of the semantics the aws connector gets from
DynamoDB conditions: each method is one `write()` transaction that checks its conditions on the
rows it read and then writes, so it happens completely or not at all.
"""

from __future__ import annotations

from fma.adapters.memory import rows as R
from fma.adapters.memory.kv import RowStore
from fma.domain.clock import iso
from fma.domain.enrollment import check_enrollment
from fma.domain.errors import Conflict, NotFound
from fma.domain.experiment import Experiment
from fma.domain.records import Page, RoundRecord, TokenRecord
from fma.domain.states import ExperimentStatus, allowed, finishing


class TokenRecords:
    rows: RowStore

    def put_token(self, rec: TokenRecord) -> None:
        with self.rows.write() as tx:
            if tx.get("tokens", (rec.token_hash,)) is not None:
                raise Conflict("a token with this hash exists", code="TOKEN_EXISTS")
            tx.put("tokens", R.token_row(rec))

    def get_token(self, token_hash: str) -> TokenRecord | None:
        row = self.rows.get_one("tokens", (token_hash,))
        return R.to_token(row) if row else None

    def revoke_token(self, token_hash: str) -> None:
        with self.rows.write() as tx:
            row = tx.get("tokens", (token_hash,))
            if row is None:
                raise NotFound("token not found", code="TOKEN_NOT_FOUND")
            tx.put("tokens", row | {"revoked": True})


class ExperimentRecords:
    rows: RowStore

    def create_experiment(self, exp: Experiment) -> None:
        with self.rows.write() as tx:
            if tx.get("experiments", (exp.id,)) is not None:
                raise Conflict(f"experiment {exp.id} exists", code="EXPERIMENT_EXISTS")
            tx.put("experiments", R.experiment_row(exp))

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        row = self.rows.get_one("experiments", (experiment_id,))
        return R.to_experiment(row) if row else None

    def list_experiments(self, owner: str | None, limit: int, cursor: str | None, archived: bool = False) -> Page:
        """Newest first, archived ones apart; the cursor is the last listing key of the previous
        page, bound to this query (owner, archived) as the aws connector's cursors are."""
        scope = f"experiments#{owner or ''}#{'archived' if archived else 'live'}"
        before = R.decode_cursor(cursor, str, scope)
        with self.rows.read() as tx:
            found = tx.listed(owner, before, limit + 1, archived)
        page = found[:limit]
        more = len(found) > limit
        return Page([R.to_experiment(r) for r in page],
                    R.encode_cursor(page[-1]["list_key"], scope) if more else None)

    def set_archived(self, experiment_id: str, owner: str, archived: bool) -> Experiment:
        """Hide (or show again) an experiment in lists; nothing else changes."""
        with self.rows.write() as tx:
            row = tx.get("experiments", (experiment_id,))
            if row is None:
                raise NotFound(f"experiment {experiment_id} not found", code="EXPERIMENT_NOT_FOUND")
            row["archived"] = archived
            tx.put("experiments", row)
        return R.to_experiment(row)

    def set_status(self, experiment_id: str, allowed_from: set[ExperimentStatus],
                   target: ExperimentStatus) -> Experiment:
        with self.rows.write() as tx:
            row = tx.get("experiments", (experiment_id,))
            if row is None or row["status"] not in allowed_from:
                raise Conflict(f"experiment cannot move to {target} from its current status",
                               code="INVALID_TRANSITION")
            row.update(status=str(target), updated_at=iso())
            tx.put("experiments", row)
        return R.to_experiment(row)

    def set_model_error(self, experiment_id: str, reason: str) -> None:
        with self.rows.write() as tx:
            row = tx.get("experiments", (experiment_id,))
            if row is None:
                raise NotFound(f"experiment {experiment_id} not found", code="EXPERIMENT_NOT_FOUND")
            tx.put("experiments", row | {"model_error": reason[:1000], "updated_at": iso()})

    def activate(self, experiment_id: str, spec: list[dict], sha256: str, first_round: RoundRecord,
                 version_id: str | None = None) -> bool:
        """PENDING_MODEL -> RUNNING with round 1 OPEN (and the validated object version pinned),
        in one transaction; False if already done."""
        with self.rows.write() as tx:
            row = tx.get("experiments", (experiment_id,))
            if row is None or row["status"] not in allowed("activate"):
                return False
            if tx.get("rounds", (experiment_id, first_round.round)) is not None:
                return False
            row.update(status=str(ExperimentStatus.RUNNING), model_spec=spec, model_sha256=sha256, model_version=0,
                       initial_sha256=sha256, initial_version_id=version_id, current_round=1, updated_at=iso(),
                       model_error=None)
            tx.put("experiments", row)
            tx.put("rounds", R.round_row(first_round, _deadline_due(first_round)))
        return True

    def register_client(self, experiment_id: str, client_id: str, name: str | None,
                        enrollment_hash: str, client_token: TokenRecord, now: float) -> None:
        """Consume one use of the enrollment token, add the client and its token, count it."""
        with self.rows.write() as tx:
            enrollment = tx.get("tokens", (enrollment_hash,))
            check_enrollment(R.to_token(enrollment) if enrollment else None, now)
            exp = tx.get("experiments", (experiment_id,))
            if exp is None or exp["status"] not in allowed("register_client.experiment"):
                raise Conflict("experiment no longer accepts clients", code="EXPERIMENT_CLOSED")
            if (tx.get("clients", (experiment_id, client_id)) is not None
                    or tx.get("tokens", (client_token.token_hash,)) is not None):
                raise Conflict("registration conflicted, retry", code="REGISTRATION_CONFLICT")
            tx.put("tokens", enrollment | {"uses": int(enrollment["uses"]) + 1})
            tx.put("clients", {"experiment_id": experiment_id, "client_id": client_id, "name": name,
                               "created_at": iso(now), "token_hash": client_token.token_hash, "revoked": False})
            tx.put("tokens", R.token_row(client_token))
            tx.put("experiments", exp | {"clients": int(exp["clients"]) + 1})

    def get_client_token_hash(self, experiment_id: str, client_id: str) -> tuple[str | None, bool] | None:
        """(token hash, revoked) of an enrolled client; None if there is no such client."""
        with self.rows.read() as tx:
            row = tx.get("clients", (experiment_id, client_id))
        return (row.get("token_hash"), bool(row.get("revoked"))) if row else None

    def revoke_client(self, experiment_id: str, client_id: str, token_hash: str | None) -> bool:
        """Mark the client revoked, revoke its token and uncount it in one transaction; False
        (nothing changed) if it is unknown or already revoked."""
        with self.rows.write() as tx:
            client = tx.get("clients", (experiment_id, client_id))
            exp = tx.get("experiments", (experiment_id,))
            if client is None or client.get("revoked") or exp is None:
                return False
            tx.put("clients", client | {"revoked": True})
            tok = tx.get("tokens", (token_hash,)) if token_hash else None
            if tok is not None:
                tx.put("tokens", tok | {"revoked": True})
            tx.put("experiments", exp | {"clients": int(exp["clients"]) - 1})
        return True

    def finish_experiment(self, experiment_id: str, status: ExperimentStatus) -> bool:
        with self.rows.write() as tx:
            row = tx.get("experiments", (experiment_id,))
            if row is None or row["status"] not in allowed(finishing(status)):
                return False
            tx.put("experiments", row | {"status": str(status), "updated_at": iso()})
        return True


def _deadline_due(r: RoundRecord) -> str | None:
    return R.due_key(r.deadline, r.experiment_id, r.round) if r.deadline is not None else None
