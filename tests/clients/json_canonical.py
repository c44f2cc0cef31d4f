"""The JSON gateway's answers against protobuf's own proto3 JSON printer.

Run by tests/api/tools.rs:
    json_canonical.py <generated dir> <grpc addr> <http base URL> <target base URL>

For every response type of the API it compares the gateway's JSON with
Python's `google.protobuf.json_format` (an implementation independent of the
server's pbjson):

- reads: the same request over gRPC and over the JSON route; the gRPC
  answer printed by json_format must equal the gateway's JSON;
- writes (which cannot be sent twice): the gateway's JSON is parsed into the
  message strictly (unknown fields refused) and printed again by
  json_format; the text must not change.

Both sides are compared as parsed JSON (key order and whitespace are not
part of the contract), with json_format's defaults, which are the gateway's
documented choices: lowerCamelCase names, fields at their default value
left out, int64 as strings, enums by name, Timestamps in UTC with `Z` and 0,
3, 6 or 9 fractional digits, Durations as "60s". Nothing else is normalised:
a timestamp written `+00:00` or a field named in snake_case is a mismatch.

Prints one JSON line {"compared": [...]} and exits 0; on the first mismatch
prints both sides and exits 1.
"""

import json
import sys
import time
import urllib.error
import urllib.request
import uuid

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from google.protobuf import duration_pb2, json_format  # noqa: E402
from monitor.v1 import monitor_pb2 as pb  # noqa: E402
from monitor.v1 import monitor_pb2_grpc  # noqa: E402

GRPC_ADDR, HTTP, TARGET = sys.argv[2], sys.argv[3].rstrip("/"), sys.argv[4].rstrip("/")
PASSWORD = "correct horse battery"
compared = []


def http(method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(HTTP + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return json.loads(res.read() or b"{}")
    except urllib.error.HTTPError as err:
        sys.exit(f"{method} {path}: HTTP {err.code}: {err.read().decode()}")


def printed(message):
    """json_format's proto3 JSON of `message`, parsed."""
    return json.loads(json_format.MessageToJson(message))


def same(name, message, gateway):
    expected = printed(message)
    if expected != gateway:
        print(f"{name}: the gateway's JSON differs from json_format's", file=sys.stderr)
        print(f"  json_format: {json.dumps(expected, sort_keys=True)}", file=sys.stderr)
        print(f"  gateway:     {json.dumps(gateway, sort_keys=True)}", file=sys.stderr)
        sys.exit(1)
    compared.append(name)


def canonical(name, cls, gateway):
    """A write's answer: parsed strictly, printed again, unchanged."""
    same(name, json_format.ParseDict(gateway, cls()), gateway)


def main():
    stub = monitor_pb2_grpc.MonitorServiceStub(grpc.insecure_channel(GRPC_ADDR))

    def email():
        return f"json-{uuid.uuid4().hex}@example.com"

    address = email()
    stub.Register(pb.RegisterRequest(email=address, password=PASSWORD))
    canonical(
        "RegisterResponse",
        pb.RegisterResponse,
        http("POST", "/v1/users", {"email": email(), "password": PASSWORD}),
    )
    token = stub.Login(pb.LoginRequest(email=address, password=PASSWORD)).token
    canonical(
        "LoginResponse",
        pb.LoginResponse,
        http("POST", "/v1/login", {"email": address, "password": PASSWORD}),
    )
    auth = [("authorization", f"Bearer {token}")]

    added = http("POST", "/v1/urls", {"url": f"{TARGET}/ok", "period": "1s"}, token)
    canonical("AddUrlResponse", pb.AddUrlResponse, added)
    ok_id = int(added["url"]["id"])
    failing = stub.AddUrl(
        pb.AddUrlRequest(url=f"{TARGET}/fail", period=duration_pb2.Duration(seconds=1)),
        metadata=auth,
    ).url

    # Probes land: statuses for both, an incident for the failing one.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        statuses = stub.ListStatuses(pb.ListStatusesRequest(url_id=ok_id), metadata=auth)
        incidents = stub.ListIncidents(pb.ListIncidentsRequest(), metadata=auth)
        if statuses.statuses and incidents.incidents:
            break
        time.sleep(0.2)
    else:
        sys.exit("no statuses or no incident within 30 s")

    # The live stream over SSE: each event's data is an Event.
    req = urllib.request.Request(HTTP + "/v1/events", method="GET")
    req.add_header("authorization", f"Bearer {token}")
    kinds = set()
    with urllib.request.urlopen(req, timeout=10) as res:
        deadline = time.monotonic() + 20
        while "status" not in kinds and time.monotonic() < deadline:
            line = res.readline().decode()
            if line.startswith("data:"):
                event = json.loads(line[len("data:"):])
                canonical("Event (WatchEvents, SSE)", pb.Event, event)
                kinds.update(k for k in event if k != "resumeToken")
    if "status" not in kinds:
        sys.exit(f"no status event on /v1/events within 20 s (saw {sorted(kinds)})")

    # Paused, so that reads over both transports see the same rows.
    for url_id in (ok_id, failing.id):
        canonical(
            "Url (UpdateUrl)",
            pb.Url,
            http("PATCH", f"/v1/urls/{url_id}?updateMask=paused", {"paused": True}, token),
        )
    time.sleep(2)

    same(
        "Url (GetUrl)",
        stub.GetUrl(pb.GetUrlRequest(id=ok_id), metadata=auth),
        http("GET", f"/v1/urls/{ok_id}", token=token),
    )
    same(
        "ListUrlsResponse",
        stub.ListUrls(pb.ListUrlsRequest(), metadata=auth),
        http("GET", "/v1/urls", token=token),
    )
    for url_id in (ok_id, failing.id):
        same(
            "ListStatusesResponse",
            stub.ListStatuses(pb.ListStatusesRequest(url_id=url_id, page_size=50), metadata=auth),
            http("GET", f"/v1/urls/{url_id}/statuses?pageSize=50", token=token),
        )
        same(
            "GetUrlStatsResponse",
            stub.GetUrlStats(pb.GetUrlStatsRequest(url_id=url_id), metadata=auth),
            http("GET", f"/v1/urls/{url_id}/stats", token=token),
        )
    same(
        "ListIncidentsResponse",
        stub.ListIncidents(pb.ListIncidentsRequest(), metadata=auth),
        http("GET", "/v1/incidents", token=token),
    )

    channel = http(
        "POST",
        "/v1/channels",
        {"name": "ops", "webhook": {"url": f"{TARGET}/ok"}, "urlIds": [str(ok_id)]},
        token,
    )
    canonical("Channel (CreateChannel)", pb.Channel, channel)
    channel_id = int(channel["id"])
    canonical(
        "Channel (UpdateChannel)",
        pb.Channel,
        http("PATCH", f"/v1/channels/{channel_id}?updateMask=notifyDegraded", {"notifyDegraded": True}, token),
    )
    same(
        "ListChannelsResponse",
        stub.ListChannels(pb.ListChannelsRequest(), metadata=auth),
        http("GET", "/v1/channels", token=token),
    )
    canonical(
        "Delivery (TestChannel)",
        pb.Delivery,
        http("POST", f"/v1/channels/{channel_id}:test", {}, token),
    )
    same(
        "ListDeliveriesResponse",
        stub.ListDeliveries(pb.ListDeliveriesRequest(channel_id=channel_id), metadata=auth),
        http("GET", f"/v1/channels/{channel_id}/deliveries", token=token),
    )

    page = {
        "slug": f"json-{uuid.uuid4().hex[:8]}",
        "title": "Status",
        "urlIds": [str(ok_id)],
        "public": True,
        "showUrls": True,
    }
    canonical("StatusPage (UpdateStatusPage)", pb.StatusPage, http("PUT", "/v1/status-page", page, token))
    same(
        "StatusPage (GetStatusPage)",
        stub.GetStatusPage(pb.GetStatusPageRequest(), metadata=auth),
        http("GET", "/v1/status-page", token=token),
    )

    canonical(
        "DeleteChannelResponse",
        pb.DeleteChannelResponse,
        http("DELETE", f"/v1/channels/{channel_id}", token=token),
    )
    canonical(
        "DeleteUrlResponse",
        pb.DeleteUrlResponse,
        http("DELETE", f"/v1/urls/{failing.id}", token=token),
    )
    print(json.dumps({"compared": compared}))


if __name__ == "__main__":
    main()
