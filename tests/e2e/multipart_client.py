"""A client process for the 300 MiB multipart e2e (test_multipart_300mib.py): it submits one update
file for round 1 and prints `{"sent": <part PUTs>, "status": ...}`. `--pause` sleeps before each
part PUT so that the test can kill it halfway (SIGKILL) and start it again to resume."""

from __future__ import annotations

import argparse
import json
import time

import requests

from fma_client import Client


class PacedSession(requests.Session):
    def __init__(self, pause: float):
        super().__init__()
        self.pause = pause

    def request(self, method, url, *args, **kwargs):
        if method == "PUT" and "/objects/parts" in url and self.pause:
            time.sleep(self.pause)
        return super().request(method, url, *args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("url", "experiment", "enroll", "update", "registration"):
        parser.add_argument(name)
    parser.add_argument("--pause", type=float, default=0.0)
    args = parser.parse_args()
    client = Client(args.url, args.experiment, enrollment_token=args.enroll, registration_file=args.registration,
                    session=PacedSession(args.pause), upload_workers=2, timeout=(5.0, 300.0))
    result = client.submit_file(args.update, round=1, wait=True, timeout=600)
    print(json.dumps({"sent": client.last_upload.sent if client.last_upload else None,
                      "status": result.get("status")}), flush=True)


if __name__ == "__main__":
    main()
