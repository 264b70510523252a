#!/usr/bin/env python3
"""An example out-of-process Lienthong adapter, in Python.

It implements the adapter protocol (proto/lienthong/adapter/v1/adapter.proto)
for healthcare and education, serving facilities and schools from JSON files
(by default the sandbox's), to show that the protocol is language-neutral.
A province replaces the JSON with calls to its own systems.

    pip install -r requirements.txt        # grpcio, grpcio-tools, grpcio-status
    python3 server.py --port 50061            # then point a `remote` adapter at it
    python3 server.py --port 50061 --tls-cert server.pem --tls-key server.key --client-ca ca.pem   # mutual TLS
    cargo run -p lienthong-contract-tests -- --adapter remote --endpoint http://127.0.0.1:50061

The Python stubs are generated from the .proto files at start (grpcio-tools).
"""
import argparse
import hashlib
import importlib.resources
import json
import math
import os
import sys
import tempfile
import unicodedata
from concurrent import futures

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
PROTO_DIR = os.path.join(ROOT, "proto")
DEFAULT_SIZE, MAX_SIZE = 20, 100


def generate_stubs():
    out = tempfile.mkdtemp(prefix="lienthong-stubs-")
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    files = [os.path.join("lienthong", "v1", f) for f in sorted(os.listdir(os.path.join(PROTO_DIR, "lienthong", "v1")))]
    files.append(os.path.join("lienthong", "adapter", "v1", "adapter.proto"))
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}", *files]
    if protoc.main(args) != 0:
        sys.exit("generating the Python stubs failed")
    sys.path.insert(0, out)


generate_stubs()
from lienthong.adapter.v1 import adapter_pb2, adapter_pb2_grpc  # noqa: E402
from lienthong.v1 import common_pb2, education_pb2, health_pb2  # noqa: E402


def fold(text):
    """Case- and diacritic-insensitive form: "Chợ Rẫy" -> "cho ray"."""
    text = unicodedata.normalize("NFD", text or "")
    text = "".join(c for c in text if not unicodedata.combining(c))
    return text.replace("đ", "d").replace("Đ", "D").lower()


def distance_m(lat1, lng1, lat2, lng2):
    la1, la2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin(math.radians(lng2 - lng1) / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(h)))


def fingerprint(request):
    """Binds page tokens to the request's filters."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.page_size, copy.page_token = 0, ""
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:16]


def invalid_field(context, field, message):
    """INVALID_ARGUMENT with a BadRequest detail naming the field, as the
    adapter contract asks."""
    violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message, details=[detail])
    context.abort_with_status(rpc_status.to_status(status))


def page(items, request, context):
    """One page of `items` per page_size / page_token."""
    if request.page_size < 0:
        invalid_field(context, "page_size", "page_size must not be negative")
    size = DEFAULT_SIZE if request.page_size == 0 else min(request.page_size, MAX_SIZE)
    offset = 0
    if request.page_token:
        fp, _, off = request.page_token.partition(":")
        if fp != fingerprint(request) or not off.isdigit():
            invalid_field(context, "page_token", "page_token was not issued for these filters")
        offset = int(off)
    chunk = items[offset:offset + size]
    end = offset + len(chunk)
    token = f"{fingerprint(request)}:{end}" if end < len(items) else ""
    return chunk, token


def near_filter(records, near, location_of, set_distance):
    """Keeps records inside the circle, nearest first, with their distance."""
    if not near.HasField("center"):
        return records
    c = near.center
    out = []
    for r in records:
        lat, lng = location_of(r)
        d = distance_m(c.latitude, c.longitude, lat, lng)
        if d <= near.radius_meters:
            out.append((d, r))
    out.sort(key=lambda pair: pair[0])
    return [set_distance(r, round(d, 1)) for d, r in out]


# The version of lienthong.adapter.v1 this example implements.
PROTOCOL_VERSION = "1.1"


class Adapter(adapter_pb2_grpc.AdapterServiceServicer):
    def __init__(self, data_dir, protocol_version=PROTOCOL_VERSION, province="79"):
        self.protocol_version = protocol_version
        self.province = province
        def load(name):
            with open(os.path.join(data_dir, name), encoding="utf-8") as f:
                return json.load(f)

        self.facilities = sorted((self.facility(r) for r in load("health-facilities.json")),
                                 key=lambda f: (fold(f.name), f.facility_code))
        self.schools = sorted((self.school(r) for r in load("schools.json")), key=lambda s: (fold(s.name), s.school_id))

    def address(self, r):
        return common_pb2.Address(street=r["street"], ward_code=r["ward_code"], province_code=self.province)

    def facility(self, r):
        return health_pb2.Facility(
            facility_code=r["facility_code"], name=r["name"], type=health_pb2.FacilityType.Value(f"FACILITY_TYPE_{r['type']}"),
            ownership=common_pb2.Ownership.Value(f"OWNERSHIP_{r['ownership']}"), address=self.address(r),
            location=common_pb2.GeoPoint(latitude=r["lat"], longitude=r["lng"]), phone=r["phone"],
            accepts_health_insurance=r["insurance"], emergency_24h=r["emergency"], specialties=r["specialties"])

    def school(self, r):
        return education_pb2.School(
            school_id=r["school_id"], name=r["name"], level=education_pb2.SchoolLevel.Value(f"SCHOOL_LEVEL_{r['level']}"),
            ownership=common_pb2.Ownership.Value(f"OWNERSHIP_{r['ownership']}"), address=self.address(r),
            location=common_pb2.GeoPoint(latitude=r["lat"], longitude=r["lng"]), phone=r["phone"], website=r["website"])

    def GetCapabilities(self, request, context):
        return adapter_pb2.GetCapabilitiesResponse(
            methods=[
                "lienthong.v1.HealthcareService/ListFacilities", "lienthong.v1.HealthcareService/GetFacility",
                "lienthong.v1.EducationService/ListSchools", "lienthong.v1.EducationService/GetSchool",
            ],
            protocol_version=self.protocol_version, adapter_name="lienthong-python-example", adapter_version="0.2.0")

    @staticmethod
    def _with_distance(message, d):
        copy = type(message)()
        copy.CopyFrom(message)
        copy.distance_meters = d
        return copy

    def ListFacilities(self, request, context):
        needle = fold(request.text.strip())
        found = [f for f in self.facilities
                 if (not request.ward_code or f.address.ward_code == request.ward_code)
                 and (request.type == 0 or f.type == request.type)
                 and (not needle or needle in fold(f.name + " " + f.address.street))]
        found = near_filter(found, request.near, lambda f: (f.location.latitude, f.location.longitude), self._with_distance)
        items, token = page(found, request, context)
        return health_pb2.ListFacilitiesResponse(facilities=items, next_page_token=token, total_size=len(found))

    def GetFacility(self, request, context):
        for f in self.facilities:
            if f.facility_code == request.facility_code:
                return f
        context.abort(grpc.StatusCode.NOT_FOUND, "no such facility")

    def ListSchools(self, request, context):
        needle = fold(request.text.strip())
        found = [s for s in self.schools
                 if (not request.ward_code or s.address.ward_code == request.ward_code)
                 and (request.level == 0 or s.level == request.level)
                 and (request.ownership == 0 or s.ownership == request.ownership)
                 and (not needle or needle in fold(s.name + " " + s.address.street))]
        found = near_filter(found, request.near, lambda s: (s.location.latitude, s.location.longitude), self._with_distance)
        items, token = page(found, request, context)
        return education_pb2.ListSchoolsResponse(schools=items, next_page_token=token, total_size=len(found))

    def GetSchool(self, request, context):
        for s in self.schools:
            if s.school_id == request.school_id:
                return s
        context.abort(grpc.StatusCode.NOT_FOUND, "no such school")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50061, help="0 picks a free port")
    parser.add_argument("--data-dir", default=os.path.join(ROOT, "adapters", "sandbox", "data"))
    parser.add_argument("--tls-cert", help="PEM certificate: serve TLS")
    parser.add_argument("--tls-key", help="PEM key of --tls-cert")
    parser.add_argument("--client-ca", help="PEM CA: require client certificates it signed (mutual TLS)")
    parser.add_argument("--province", default="79", help="the 2-digit province whose data --data-dir holds")
    parser.add_argument("--protocol-version", default=PROTOCOL_VERSION,
                        help="the adapter protocol version announced (to see a gateway refuse another major)")
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    adapter_pb2_grpc.add_AdapterServiceServicer_to_server(Adapter(args.data_dir, args.protocol_version, args.province), server)
    if args.tls_cert:
        read = lambda path: open(path, "rb").read()
        credentials = grpc.ssl_server_credentials(
            [(read(args.tls_key), read(args.tls_cert))],
            root_certificates=read(args.client_ca) if args.client_ca else None,
            require_client_auth=bool(args.client_ca),
        )
        port = server.add_secure_port(f"{args.host}:{args.port}", credentials)
    else:
        port = server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    print(f"listening on {args.host}:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
