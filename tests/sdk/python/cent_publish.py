"""Publishes through the HTTP server API with the `cent` PyPI client (sync `cent.Client`:
POST {api}/publish with X-API-Key) and prints one JSON line.

Arguments: --api http://127.0.0.1:PORT/api --api-key KEY --channel CH --data '<json>'
           [--count N: publishes N times, data {"n": i} when --data is absent]
           [--idempotency-key K] [--history: also read the channel's history]
Result: {ok, published: [{offset, epoch}], history?: {offset, epoch, publications}} or
        {ok: false, error, errorType, code?}
"""

import json
import sys

from cent import CentApiResponseError, CentError, Client, HistoryRequest, PublishRequest

from gyre_sdk import parse_args, need


def main():
    result = {"ok": False, "scenario": "cent_publish"}
    try:
        args = parse_args()
        client = Client(need(args, "api"), need(args, "api-key"), timeout=5.0)
        channel = need(args, "channel")
        count = int(args.get("count", 1))
        result["published"] = []
        for i in range(1, count + 1):
            data = json.loads(args["data"]) if "data" in args else {"n": i}
            extra = {}
            if args.get("idempotency-key"):
                extra["idempotency_key"] = args["idempotency-key"]
            r = client.publish(PublishRequest(channel=channel, data=data, **extra))
            result["published"].append({"offset": r.offset, "epoch": r.epoch})
        if args.get("history"):
            h = client.history(HistoryRequest(channel=channel, limit=-1))
            result["history"] = {
                "offset": h.offset,
                "epoch": h.epoch,
                "publications": [{"offset": p.offset, "data": p.data} for p in h.publications],
            }
        result["ok"] = True
        code = 0
    except CentApiResponseError as e:
        result.update(error=str(e), errorType=type(e).__name__, code=e.code)
        code = 1
    except CentError as e:
        result.update(error=str(e), errorType=type(e).__name__)
        code = 1
    except Exception as e:  # noqa: BLE001 - every failure becomes the JSON line
        result.update(error=f"{type(e).__name__}: {e}", errorType=type(e).__name__)
        code = 1
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
