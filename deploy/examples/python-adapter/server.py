#!/usr/bin/env python3
"""An example out-of-process Lienthong adapter, in Python.

It implements the adapter protocol (proto/lienthong/adapter/v1/adapter.proto)
for healthcare, education and public services (agencies, procedures, a
citizen's dossiers and a streaming WatchDossier), serving them from JSON files
(by default the sandbox's), to show that the protocol is language-neutral.
A province replaces the JSON with calls to its own systems. Dossiers move on
a clock (--dossier-pace) so that watching one shows changes.

    pip install -r requirements.txt        # grpcio, grpcio-tools, grpcio-status, grpcio-health-checking
    python3 server.py --port 50061            # then point a `remote` adapter at it
    python3 server.py --port 50061 --tls-cert server.pem --tls-key server.key --client-ca ca.pem   # mutual TLS
    cargo run -p lienthong-contract-tests -- --adapter remote --endpoint http://127.0.0.1:50061

The Python stubs are generated from the .proto files at start (grpcio-tools).
"""
import argparse
import hashlib
import hmac
import importlib.resources
import json
import math
import os
import secrets
import sys
import tempfile
import time
import unicodedata
from concurrent import futures

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health as health_checks, health_pb2 as health_check_pb2
from grpc_health.v1 import health_pb2_grpc as health_check_pb2_grpc
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
from google.protobuf import timestamp_pb2  # noqa: E402
from lienthong.v1 import common_pb2, education_pb2, health_pb2, public_services_pb2 as ps  # noqa: E402

# National dossier statuses after which nothing changes: rejected, withdrawn,
# stopped, result returned.
FINAL_STATUSES = {3, 7, 8, 10}
DAY = 86_400


def fold(text):
    """Case- and diacritic-insensitive form: "Chợ Rẫy" -> "cho ray"."""
    text = unicodedata.normalize("NFD", text or "")
    text = "".join(c for c in text if not unicodedata.combining(c))
    return text.replace("đ", "d").replace("Đ", "D").lower()


def distance_m(lat1, lng1, lat2, lng2):
    la1, la2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin(math.radians(lng2 - lng1) / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(h)))


# Page tokens are sealed with a key of this process: they cannot be forged,
# and a personal list's token says nothing about the citizen it is bound to.
TOKEN_KEY = secrets.token_bytes(32)


def fingerprint(request, caller=""):
    """Binds page tokens to the request's filters (and to the citizen, for a
    personal list)."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.page_size, copy.page_token = 0, ""
    message = copy.SerializeToString(deterministic=True) + b"\0" + caller.encode()
    return hmac.new(TOKEN_KEY, message, hashlib.sha256).hexdigest()[:32]


def invalid_field(context, field, message):
    """INVALID_ARGUMENT with a BadRequest detail naming the field, as the
    adapter contract asks."""
    violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message, details=[detail])
    context.abort_with_status(rpc_status.to_status(status))


def page(items, request, context, caller=""):
    """One page of `items` per page_size / page_token."""
    if request.page_size < 0:
        invalid_field(context, "page_size", "page_size must not be negative")
    size = DEFAULT_SIZE if request.page_size == 0 else min(request.page_size, MAX_SIZE)
    offset = 0
    if request.page_token:
        fp, _, off = request.page_token.partition(":")
        if fp != fingerprint(request, caller) or not off.isdigit():
            invalid_field(context, "page_token", "page_token was not issued for these filters")
        offset = int(off)
    chunk = items[offset:offset + size]
    end = offset + len(chunk)
    token = f"{fingerprint(request, caller)}:{end}" if end < len(items) else ""
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


def public_services(method):
    """A public-services method: UNIMPLEMENTED when the data dir has none, as
    for any method the adapter does not declare."""
    def serve(self, request, context):
        if not self.serves_public_services:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method.__name__} is not served here")
        return method(self, request, context)
    serve.__name__ = method.__name__
    return serve


def timestamp(seconds):
    return timestamp_pb2.Timestamp(seconds=int(seconds))


class DossierClock:
    """Moves each dossier along its timeline: the statuses up to `done`
    happened before start (a day apart), the rest one every `pace` seconds
    after start, dossiers staggered by a quarter of the pace."""

    def __init__(self, pace):
        self.pace = pace
        self.started = time.monotonic()
        self.started_wall = time.time()

    def step_at(self, plan, j):
        """Monotonic time of live step j (0: the first after `done`)."""
        return self.started + self.pace * (plan["seq"] % 4) / 4 + self.pace * (j + 1)

    def steps_done(self, plan, now=None):
        now = time.monotonic() if now is None else now
        live = 0
        while plan["done"] + live < len(plan["timeline"]) and self.step_at(plan, live) <= now:
            live += 1
        return plan["done"] + live

    def status_time(self, plan, i):
        if i < plan["done"]:
            return self.started_wall - (plan["done"] - i) * DAY + plan["seq"] * 1_800
        return self.started_wall + (self.step_at(plan, i - plan["done"]) - self.started)


# The version of lienthong.adapter.v1 this example implements.
PROTOCOL_VERSION = "1.2"


class Adapter(adapter_pb2_grpc.AdapterServiceServicer):
    def __init__(self, data_dir, protocol_version=PROTOCOL_VERSION, province="79", dossier_pace=30.0):
        self.protocol_version = protocol_version
        self.province = province
        self.clock = DossierClock(dossier_pace)
        def load(name):
            with open(os.path.join(data_dir, name), encoding="utf-8") as f:
                return json.load(f)

        self.facilities = sorted((self.facility(r) for r in load("health-facilities.json")),
                                 key=lambda f: (fold(f.name), f.facility_code))
        self.schools = sorted((self.school(r) for r in load("schools.json")), key=lambda s: (fold(s.name), s.school_id))
        # Public services only when the data dir has them.
        self.serves_public_services = os.path.exists(os.path.join(data_dir, "agencies.json"))
        if not self.serves_public_services:
            self.agencies, self.procedures, self.dossiers = [], [], []
            return
        self.agencies = sorted((self.agency(r) for r in load("agencies.json")), key=lambda a: a.agency_code)
        communes = [a.agency_code for a in self.agencies if a.level == ps.ADMINISTRATIVE_LEVEL_COMMUNE]
        self.procedures = sorted((self.procedure(r, communes) for r in load("procedures.json")),
                                 key=lambda p: p.procedure_code)
        citizens = {c["handle"]: c for c in load("citizens.json")}
        agencies = {a.agency_code: a for a in self.agencies}
        procedures = {p.procedure_code: p for p in self.procedures}
        self.dossiers = []
        for r in load("dossiers.json"):
            owner, procedure = citizens[r["owner"]], procedures[r["procedure_code"]]
            self.dossiers.append({
                "code": r["code"], "seq": r["seq"], "done": r["done"], "timeline": r["timeline"],
                "submitted": r["submitted"], "owner": owner["id_number"], "owner_name": owner["full_name"],
                "procedure": procedure, "agency": agencies[r["agency"]],
            })
        # Newest first: by submission date, then code.
        self.dossiers.sort(key=lambda d: (d["submitted"], d["code"]), reverse=True)

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

    def agency(self, r):
        return ps.Agency(
            agency_code=r["agency_code"], name=r["name"],
            level=ps.AdministrativeLevel.Value(f"ADMINISTRATIVE_LEVEL_{r['level']}"), address=self.address(r),
            location=common_pb2.GeoPoint(latitude=r["lat"], longitude=r["lng"]),
            phone=r.get("phone", ""), email=r.get("email", ""), website=r.get("website", ""))

    @staticmethod
    def procedure(r, communes):
        agencies = communes if r["agencies"] == "EVERY_COMMUNE" else r["agencies"]
        return ps.Procedure(
            procedure_code=r["procedure_code"], national_code=r["national_code"], name=r["name"], field=r["field"],
            level=ps.AdministrativeLevel.Value(f"ADMINISTRATIVE_LEVEL_{r['level']}"), agency_codes=agencies,
            processing_time=r["processing_time"], processing_days=r["processing_days"],
            fees=[ps.Fee(description=f["description"], amount_vnd=f["amount_vnd"]) for f in r["fees"]],
            required_documents=[ps.RequiredDocument(name=d["name"], copies=d["copies"]) for d in r["documents"]],
            online_level=ps.OnlineLevel.Value(f"ONLINE_LEVEL_{r['online_level']}"),
            decision_number=r["decision_number"], legal_bases=r["legal_bases"])

    def dossier(self, plan, steps=None):
        """The dossier as it stands after `steps` statuses (default: now),
        with its owner."""
        steps = self.clock.steps_done(plan) if steps is None else steps
        statuses = plan["timeline"][:steps]
        d = ps.Dossier(
            dossier_code=plan["code"], procedure_code=plan["procedure"].procedure_code,
            procedure_name=plan["procedure"].name, status=statuses[-1],
            handling_agency_code=plan["agency"].agency_code, handling_agency_name=plan["agency"].name,
            view=ps.DOSSIER_VIEW_OWNER, final=statuses[-1] in FINAL_STATUSES,
            applicant=ps.Applicant(full_name=plan["owner_name"], masked_id_number="********" + plan["owner"][-4:]))
        for i, status in enumerate(statuses):
            d.history.add(status=status, change_time=timestamp(self.clock.status_time(plan, i)))
        if 2 in statuses:  # received
            received = self.clock.status_time(plan, statuses.index(2))
            d.received_time.CopyFrom(timestamp(received))
            d.due_time.CopyFrom(timestamp(received + plan["procedure"].processing_days * DAY))
        return adapter_pb2.OwnedDossier(dossier=d, owner_id_number=plan["owner"])

    def GetCapabilities(self, request, context):
        methods = [
            "lienthong.v1.HealthcareService/ListFacilities", "lienthong.v1.HealthcareService/GetFacility",
            "lienthong.v1.EducationService/ListSchools", "lienthong.v1.EducationService/GetSchool",
        ]
        if self.serves_public_services:
            methods += [
                "lienthong.v1.PublicServicesService/ListAgencies", "lienthong.v1.PublicServicesService/GetAgency",
                "lienthong.v1.PublicServicesService/ListProcedures", "lienthong.v1.PublicServicesService/GetProcedure",
                "lienthong.v1.PublicServicesService/GetDossier", "lienthong.v1.PublicServicesService/ListMyDossiers",
                "lienthong.v1.PublicServicesService/WatchDossier",
            ]
        return adapter_pb2.GetCapabilitiesResponse(
            methods=methods, protocol_version=self.protocol_version, adapter_name="lienthong-python-example", adapter_version="0.3.0",
            provinces=[self.province])

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


    @public_services
    def ListAgencies(self, request, context):
        needle = fold(request.text.strip())
        found = [a for a in self.agencies
                 if (request.level == 0 or a.level == request.level)
                 and (not request.ward_code or a.address.ward_code == request.ward_code)
                 and (not needle or needle in fold(a.name))]
        items, token = page(found, request, context)
        return ps.ListAgenciesResponse(agencies=items, next_page_token=token, total_size=len(found))

    @public_services
    def GetAgency(self, request, context):
        for a in self.agencies:
            if a.agency_code == request.agency_code:
                return a
        context.abort(grpc.StatusCode.NOT_FOUND, "no such agency")

    @public_services
    def ListProcedures(self, request, context):
        needle = fold(request.text.strip())
        found = [p for p in self.procedures
                 if (not request.field or p.field == request.field)
                 and (not request.agency_code or request.agency_code in p.agency_codes)
                 and (request.level == 0 or p.level == request.level)
                 and (request.online_level == 0 or p.online_level == request.online_level)
                 and (not needle or needle in fold(p.name + " " + p.procedure_code))]
        items, token = page(found, request, context)
        return ps.ListProceduresResponse(procedures=items, next_page_token=token, total_size=len(found))

    @public_services
    def GetProcedure(self, request, context):
        for p in self.procedures:
            if request.procedure_code in (p.procedure_code, p.national_code):
                return p
        context.abort(grpc.StatusCode.NOT_FOUND, "no such procedure")

    def _plan(self, code, context):
        for plan in self.dossiers:
            if plan["code"] == code:
                return plan
        context.abort(grpc.StatusCode.NOT_FOUND, "no such dossier")

    @public_services
    def GetDossier(self, request, context):
        return self.dossier(self._plan(request.dossier_code, context))

    @public_services
    def ListMyDossiers(self, request, context):
        # The gateway verified the citizen and sends their ID number; the
        # token comes only with `forward_citizen_token = true` (unused here).
        if not request.id_number:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "this call needs a citizen")
        wanted = request.request.status
        found = [d.dossier for d in (self.dossier(p) for p in self.dossiers if p["owner"] == request.id_number)
                 if wanted == 0 or d.dossier.status == wanted]
        items, token = page(found, request.request, context, caller=request.id_number)
        return ps.ListMyDossiersResponse(dossiers=items, next_page_token=token, total_size=len(found))

    def WatchDossier(self, request, context):
        """The dossier now, then at each change, ending after a final status
        (or when the caller goes away or its deadline passes)."""
        if not self.serves_public_services:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "WatchDossier is not served here")
        plan = self._plan(request.dossier_code, context)
        steps = self.clock.steps_done(plan)
        yield self.dossier(plan, steps)
        while steps < len(plan["timeline"]) and plan["timeline"][steps - 1] not in FINAL_STATUSES:
            due = self.clock.step_at(plan, steps - plan["done"])
            while time.monotonic() < due:
                if not context.is_active():
                    return
                time.sleep(min(0.5, max(0.0, due - time.monotonic())))
            steps += 1
            yield self.dossier(plan, steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50061, help="0 picks a free port")
    parser.add_argument("--data-dir", default=os.path.join(ROOT, "adapters", "sandbox", "data"))
    parser.add_argument("--tls-cert", help="PEM certificate: serve TLS")
    parser.add_argument("--tls-key", help="PEM key of --tls-cert")
    parser.add_argument("--client-ca", help="PEM CA: require client certificates it signed (mutual TLS)")
    parser.add_argument("--province", default="79", help="the 2-digit province whose data --data-dir holds")
    parser.add_argument("--dossier-pace", type=float, default=30.0,
                        help="seconds between a dossier's status changes (the sandbox's pace)")
    parser.add_argument("--protocol-version", default=PROTOCOL_VERSION,
                        help="the adapter protocol version announced (to see a gateway refuse another major)")
    args = parser.parse_args()
    # Each open WatchDossier holds a thread: size the pool for the watches
    # expected at once.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    adapter = Adapter(args.data_dir, args.protocol_version, args.province, args.dossier_pace)
    adapter_pb2_grpc.add_AdapterServiceServicer_to_server(adapter, server)
    # The standard health check: the gateway asks it while the instance's
    # breaker is open, and uses the adapter again as soon as it serves.
    checks = health_checks.HealthServicer()
    checks.set("", health_check_pb2.HealthCheckResponse.SERVING)
    health_check_pb2_grpc.add_HealthServicer_to_server(checks, server)
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
