"""A worker's report of one attempt, and the result it is stored as."""

from __future__ import annotations

from dataclasses import dataclass

from cloudai.model import Result, TaskState

from .store.base import cut_log_tail


@dataclass(slots=True)
class Report:
    worker_id: str
    task_id: str
    attempt: int
    state: TaskState
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    log_tail: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    peak_memory_bytes: int = 0

    def result(self) -> Result:
        """The stored result of this (final) report; its log tail cut to the store's bound."""
        return Result(
            task_id=self.task_id,
            attempt=self.attempt,
            state=self.state,
            exit_code=self.exit_code,
            reason=self.reason,
            message=self.message,
            log_tail=cut_log_tail(self.log_tail),
            started_at=self.started_at,
            finished_at=self.finished_at,
            peak_memory_bytes=self.peak_memory_bytes,
            worker_id=self.worker_id,
        )
