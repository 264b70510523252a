#!/usr/bin/env python3
"""Builds the sandbox dataset and the embedded administrative units from the
genuine public data in ../shared/data (see each PROVENANCE.md) plus the
hand-written sources in tools/sandbox-sources/.

Run from the repository root:  python3 tools/build_sandbox_data.py [SHARED_DATA_DIR]

Outputs (all text in NFC, sorted for stable diffs):
  adapters/core/data/provinces-2025.csv, wards-2025.csv
  adapters/sandbox/data/*.json
"""
import csv
import glob
import hashlib
import json
import math
import os
import re
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "data")
CORE_OUT = os.path.join(ROOT, "adapters", "core", "data")
OUT = os.path.join(ROOT, "adapters", "sandbox", "data")
SOURCES = os.path.join(ROOT, "tools", "sandbox-sources")
HCMC = "79"
# Records are dated relative to this day so that a rebuild is reproducible.
DATA_DATE = "2025-11-19T16:00:00+07:00"


def nfc(s):
    return unicodedata.normalize("NFC", (s or "").replace("\xa0", " ")).strip()


def clean(s):
    return re.sub(r"\s+", " ", nfc(s))


def write_json(name, records):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        # One record per line: compact, and diffs stay readable.
        f.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
                                   for r in records) + "\n]\n")
    print(f"{name}: {len(records)} records")


def stable_int(*parts, mod=1_000_000):
    h = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    return int(h[:12], 16) % mod


def haversine(a, b):
    la1, lo1, la2, lo2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371008.8 * math.asin(min(1.0, math.sqrt(h)))


# ---------------------------------------------------------------- admin units
def build_units():
    units = json.load(open(os.path.join(SHARED, "vn-admin-units-2025", "vn-units-2025.json"), encoding="utf-8"))
    provinces, wards = [], []
    for p in units:
        provinces.append((p["Code"], clean(p["FullName"])))
        for w in p["Wards"]:
            wards.append((w["Code"], p["Code"], clean(w["FullName"])))
    provinces.sort()
    wards.sort()
    assert len(provinces) == 34 and len(wards) == 3321, (len(provinces), len(wards))
    for name, header, rows in (
        ("provinces-2025.csv", "code,full_name", provinces),
        ("wards-2025.csv", "code,province_code,full_name", wards),
    ):
        with open(os.path.join(CORE_OUT, name), "w", encoding="utf-8") as f:
            f.write(header + "\n")
            for r in rows:
                assert all("," not in c for c in r), r
                f.write(",".join(r) + "\n")
        print(f"{name}: {len(rows)} rows")
    return {code: name for code, prov, name in wards if prov == HCMC}


def ward_key(name):
    """A matching key for old ward names: accents folded (old and new tone
    placement differ: Hoà/Hòa, Qúy/Quý), leading zeros dropped (Phường 01)."""
    folded = "".join(c for c in unicodedata.normalize("NFD", clean(name)) if not unicodedata.combining(c))
    folded = folded.replace("Đ", "D").replace("đ", "d").lower()
    return re.sub(r"\b0+(\d)", r"\1", folded)


def build_old_ward_index():
    """(old district name, old ward name) -> new HCMC ward code, from the official
    conversion table. A ward split between several new wards maps to the first."""
    index, by_name = {}, {}
    with open(os.path.join(SHARED, "vn-admin-conversion-2025", "old-to-new-communes.csv"), encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) < 8 or not row[0].endswith(f"({HCMC})") or not row[2].strip().isdigit():
                continue
            new_code, old_name = row[2].strip(), clean(row[3])
            if not old_name:
                continue  # whole districts turned into one unit (Côn Đảo) name no old ward
            district = clean(re.sub(r"\s*\(\d+\)\s*$", "", row[6]))
            index.setdefault((district, ward_key(old_name)), new_code)
            by_name.setdefault(ward_key(old_name), set()).add(new_code)
    return index, by_name


def new_ward_of(zone, old_ward, index, by_name):
    zone, old_ward = clean(zone), ward_key(old_ward)
    if not old_ward:
        return ""
    # The bus data predates Thủ Đức city (2021): its districts 2 and 9 are now Thủ Đức.
    for d in (zone, "Thành phố Thủ Đức" if zone in ("Quận 2", "Quận 9", "Quận Thủ Đức") else None,
              zone.replace("Quận ", "Quận ").replace("Huyện ", "Huyện ")):
        if d and (d, old_ward) in index:
            return index[(d, old_ward)]
    candidates = by_name.get(old_ward, set())
    return next(iter(candidates)) if len(candidates) == 1 else ""


# ---------------------------------------------------------------------- buses
STOP_TYPES = {"Trụ dừng": "POLE", "Nhà chờ": "SHELTER", "Bến xe": "TERMINAL", "Ô sơn": "PAINTED",
              "Điểm đầu cuối": "TERMINAL", "Trạm": "SHELTER"}


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def build_bus(index, by_name, hcmc_wards):
    bus = os.path.join(SHARED, "hcmc-bus-ebms")
    variants = {}
    for line in jsonl(os.path.join(bus, "vars.json")):
        for v in line:
            variants[(int(v["RouteId"]), int(v["RouteVarId"]))] = v
    stop_lists = {(int(l["RouteId"]), int(l["RouteVarId"])): l["Stops"] for l in jsonl(os.path.join(bus, "stops.json"))}
    stops, routes = {}, {}
    for key, v in sorted(variants.items()):
        seq = stop_lists.get(key) or []
        if len(seq) < 2:
            continue
        ids = []
        for s in seq:
            sid = str(s["StopId"])
            if sid not in stops:
                ward = new_ward_of(s.get("Zone", ""), s.get("Ward") or "", index, by_name)
                street = clean(" ".join(x for x in (s.get("AddressNo") or "", s.get("Street") or "") if x))
                stops[sid] = {
                    "stop_id": sid, "code": clean(s.get("Code")), "name": clean(s.get("Name")),
                    "type": STOP_TYPES.get(clean(s.get("StopType")), "POLE"),
                    "lat": round(s["Lat"], 6), "lng": round(s["Lng"], 6), "street": street,
                    "ward_code": ward if ward in hcmc_wards else "",
                    "wheelchair": clean(s.get("SupportDisability")) == "Có",
                }
            ids.append(sid)
        number = clean(v["RouteNo"])
        name = clean(re.sub(r"^Lượt (đi|về):\s*", "", v["RouteVarName"]))
        r = routes.setdefault(number, {"route_number": number, "directions": []})
        r["directions"].append({
            "outbound": bool(v["Outbound"]), "name": name,
            "headsign": clean(v.get("EndStop") or v.get("RouteVarShortName")).title() if clean(v.get("EndStop")).isupper() else clean(v.get("EndStop") or v.get("RouteVarShortName")),
            "distance_m": round(float(v["Distance"]), 1), "running_minutes": int(v["RunningTime"] or 0),
            "stop_ids": ids,
        })
    out_routes = []
    for number, r in sorted(routes.items(), key=lambda kv: route_sort_key(kv[0])):
        dirs = sorted(r["directions"], key=lambda d: not d["outbound"])[:2]
        # Timetable facts are not in the source data: synthesised deterministically.
        km = dirs[0]["distance_m"] / 1000
        out_routes.append({
            "route_number": number, "name": dirs[0]["name"], "directions": dirs,
            "first_departure": f"05:{15 * stable_int(number, 'first', mod=3):02d}",
            "last_departure": f"{19 + stable_int(number, 'last', mod=3)}:{30 * stable_int(number, 'lastm', mod=2):02d}",
            "headway_minutes": [8, 10, 12, 15, 20][stable_int(number, "headway", mod=5)],
            "fare_vnd": 5000 if km < 12 else 6000 if km < 25 else 7000,
        })
    used = {sid for r in out_routes for d in r["directions"] for sid in d["stop_ids"]}
    out_stops = sorted((s for sid, s in stops.items() if sid in used), key=lambda s: int(s["stop_id"]))
    # Stops whose source record names no (matchable) old ward take the ward of
    # the nearest stop that does: an approximation, said so in PROVENANCE.md.
    nearest = NearestWard(out_stops)
    for s in out_stops:
        if not s["ward_code"]:
            s["ward_code"] = nearest(s["lat"], s["lng"])
    write_json("bus-routes.json", out_routes)
    write_json("bus-stops.json", out_stops)
    return out_stops


def route_sort_key(number):
    m = re.match(r"(\d+)(.*)", number)
    return (0, int(m.group(1)), m.group(2)) if m else (1, 0, number)


# Records beyond the bus data's reach (more than 3 km from any stop), with the
# ward they lie in, looked up by hand in the 2025 list.
WARD_OVERRIDES = {
    "Bệnh viện Đa khoa Quốc tế Columbia Asia Bình Dương": "25978",  # Phường Thuận An
    "Bệnh viện Bà Rịa": "26560",  # Phường Bà Rịa
    "Trung tâm Y tế Quân dân y Côn Đảo": "26732",  # Đặc khu Côn Đảo
    "Astral City": "25978",  # Phường Thuận An
}


class NearestWard:
    """Assigns a ward to a point from the nearest bus stop with a known ward: an
    approximation, since no ward boundaries are shipped. Points more than 3 km
    from any such stop need an entry in WARD_OVERRIDES."""

    def __init__(self, stops):
        self.points = [(s["lat"], s["lng"], s["ward_code"]) for s in stops if s["ward_code"]]

    def __call__(self, lat, lng, name=None):
        if name in WARD_OVERRIDES:
            return WARD_OVERRIDES[name]
        best = min(self.points, key=lambda p: (p[0] - lat) ** 2 + ((p[1] - lng) * 0.98) ** 2)
        if name is not None:
            assert haversine((lat, lng), best[:2]) <= 3000, f"{name}: no bus stop within 3 km; add it to WARD_OVERRIDES"
        return best[2]


# -------------------------------------------------------------------- cameras
def build_cameras(nearest_ward):
    raw = json.load(open(os.path.join(SHARED, "hcmc-traffic-cameras", "cameras_raw.json"), encoding="utf-8"))
    out = []
    for c in raw:
        if c.get("status") != "success" or not clean(c.get("name")):
            continue
        portal = re.search(r"[?&]id=([0-9a-f]+)", c.get("image_url_x4") or "")
        out.append({
            "camera_id": str(c["id"]), "code": clean(c.get("code")), "name": clean(c.get("name")),
            "lat": round(float(c["latitude"]), 6), "lng": round(float(c["longitude"]), 6),
            "streets": [clean(s) for s in c.get("streets") or [] if clean(s)],
            "portal_id": portal.group(1) if portal else "",
            "ptz": str(c.get("ptz")).lower() == "true",
            "ward_code": nearest_ward(float(c["latitude"]), float(c["longitude"])),
            "online": stable_int(c["id"], "online", mod=20) != 0,
        })
    out.sort(key=lambda c: int(c["camera_id"]))
    write_json("traffic-cameras.json", out)


# ------------------------------------------------------ hand-written sources
def read_csv(name):
    with open(os.path.join(SOURCES, name), encoding="utf-8") as f:
        return [{k: clean(v) for k, v in row.items()} for row in csv.DictReader(f)]


def in_city(lat, lng):
    # The post-2025 city spans Củ Chi to Côn Đảo; a generous bounding box.
    return 8.5 <= lat <= 11.3 and 106.3 <= lng <= 107.6


def build_facilities(nearest_ward, hcmc_wards, stops):
    out = []
    for i, r in enumerate(read_csv("hospitals.csv"), start=1):
        lat, lng = float(r["lat"]), float(r["lng"])
        assert in_city(lat, lng), r["name"]
        out.append({
            "facility_code": f"79{i:03d}", "name": r["name"], "type": r["type"], "ownership": r["ownership"],
            "street": r["street"], "ward_code": nearest_ward(lat, lng, r["name"]), "lat": lat, "lng": lng,
            "phone": r["phone"], "insurance": r["insurance"] == "1", "emergency": r["emergency"] == "1",
            "specialties": [s for s in r["specialties"].split(";") if s],
        })
    # Every ward runs a health station (trạm y tế); place one at the centre of
    # the bus stops of the first wards the bus data covers.
    by_ward = {}
    for s in stops:
        if s["ward_code"]:
            by_ward.setdefault(s["ward_code"], []).append(s)
    for j, (code, ws) in enumerate(sorted(by_ward.items(), key=lambda kv: -len(kv[1]))[:24], start=1):
        lat = round(sum(s["lat"] for s in ws) / len(ws), 5)
        lng = round(sum(s["lng"] for s in ws) / len(ws), 5)
        out.append({
            "facility_code": f"79T{j:02d}", "name": f"Trạm Y tế {hcmc_wards[code]}", "type": "HEALTH_STATION",
            "ownership": "PUBLIC", "street": ws[0]["street"], "ward_code": code, "lat": lat, "lng": lng,
            "phone": "", "insurance": True, "emergency": False, "specialties": ["Khám chữa bệnh ban đầu", "Tiêm chủng"],
        })
    # Pharmacies of the large chains, at stops on busy streets.
    chains = ["Nhà thuốc Long Châu", "Nhà thuốc Pharmacity", "Nhà thuốc An Khang"]
    busy = [s for s in stops if s["ward_code"] and s["street"]][::97][:15]
    for k, s in enumerate(busy, start=1):
        out.append({
            "facility_code": f"79N{k:02d}", "name": f"{chains[k % 3]} - {s['street']}", "type": "PHARMACY",
            "ownership": "PRIVATE", "street": s["street"], "ward_code": s["ward_code"],
            "lat": s["lat"], "lng": s["lng"], "phone": "1800 6928" if k % 3 == 0 else "1800 6821" if k % 3 == 1 else "1900 1908",
            "insurance": False, "emergency": False, "specialties": [],
        })
    write_json("health-facilities.json", out)


LEVEL_ABBR = {"PRESCHOOL": "MN", "PRIMARY": "TH", "LOWER_SECONDARY": "THCS", "UPPER_SECONDARY": "THPT",
              "MULTI_LEVEL": "LC", "VOCATIONAL": "CD", "UNIVERSITY": "DH"}


def build_schools(nearest_ward):
    out, counters = [], {}
    for r in read_csv("schools.csv"):
        lat, lng = float(r["lat"]), float(r["lng"])
        assert in_city(lat, lng), r["name"]
        abbr = LEVEL_ABBR[r["level"]]
        counters[abbr] = counters.get(abbr, 0) + 1
        out.append({
            "school_id": f"79-{abbr}-{counters[abbr]:04d}", "name": r["name"], "level": r["level"],
            "ownership": r["ownership"], "street": r["street"], "ward_code": nearest_ward(lat, lng, r["name"]),
            "lat": lat, "lng": lng, "phone": r["phone"], "website": f"https://{r['website']}" if r["website"] else "",
        })
    write_json("schools.json", out)


def build_housing(nearest_ward):
    out = []
    for i, r in enumerate(read_csv("housing-projects.csv"), start=1):
        lat, lng = float(r["lat"]), float(r["lng"])
        out.append({
            "project_id": f"79-DANO-{i:04d}", "name": r["name"], "investor": r["investor"], "street": r["street"],
            "ward_code": nearest_ward(lat, lng, r["name"]), "lat": lat, "lng": lng, "status": r["status"],
            "total_units": int(r["units"]), "site_area_sqm": float(r["area_sqm"]),
            "approval_decision": r["decision"], "completion_date": r["completion"],
        })
    write_json("housing-projects.json", out)


SURNAMES = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương"]
MIDDLE = ["Văn", "Thị", "Minh", "Ngọc", "Hữu", "Thanh", "Quốc", "Thu", "Đức", "Hoàng"]
GIVEN = ["An", "Bình", "Châu", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hiếu", "Hùng", "Khánh", "Linh", "Long", "Mai",
         "Nam", "Ngân", "Phúc", "Quân", "Quỳnh", "Sơn", "Tâm", "Thắng", "Trang", "Trung", "Tuấn", "Uyên", "Vy", "Yến"]


def build_certificates():
    """Fictional holders: the register is public, but no real person's data is shipped."""
    out = []
    for i in range(1, 65):
        year = 2019 + stable_int(i, "year", mod=7)
        name = " ".join((SURNAMES[stable_int(i, "s", mod=len(SURNAMES))], MIDDLE[stable_int(i, "m", mod=len(MIDDLE))],
                         GIVEN[stable_int(i, "g", mod=len(GIVEN))]))
        month, day = 1 + stable_int(i, "mo", mod=12), 1 + stable_int(i, "d", mod=28)
        out.append({
            "certificate_number": f"79-MGBĐS-{year}-{i:05d}", "holder_name": name,
            "issuing_authority": "Sở Xây dựng Thành phố Hồ Chí Minh",
            "issued_date": f"{year}-{month:02d}-{day:02d}", "expiry_date": f"{year + 5}-{month:02d}-{day:02d}",
            "revoked": stable_int(i, "revoked", mod=16) == 0,
        })
    write_json("practicing-certificates.json", out)


def ward_committee_code(ward_code, order):
    return f"000.{30 + order // 100:02d}.{order % 100:02d}.H29"


def build_agencies(nearest_ward, hcmc_wards):
    out = []
    for r in read_csv("departments.csv"):
        lat, lng = float(r["lat"]), float(r["lng"])
        out.append({
            "agency_code": r["agency_code"], "name": r["name"], "level": "PROVINCE", "street": r["street"],
            "ward_code": nearest_ward(lat, lng, r["name"]), "lat": lat, "lng": lng, "phone": r["phone"], "email": r["email"],
            "website": f"https://{r['website']}" if r["website"] else "",
        })
    # The people's committee of every ward of the city (commune level).
    committees = {}
    for order, (code, name) in enumerate(sorted(hcmc_wards.items())):
        agency = ward_committee_code(code, order)
        committees[code] = agency
        out.append({
            "agency_code": agency, "name": f"Ủy ban nhân dân {name}", "level": "COMMUNE", "street": "",
            "ward_code": code, "lat": None, "lng": None, "phone": "", "email": "", "website": "",
        })
    write_json("agencies.json", out)
    return committees


# ---------------------------------------------------------------- procedures
CHANNEL = re.compile(r"(Trực tuyến|Trực tiếp|Dịch vụ bưu chính)\s*(\d+)?\s*(Ngày làm việc|Ngày)?\s*"
                     r"(Miễn phí|[\d.,]+\s*(?:Việt Nam Đồng|đồng|VNĐ)|Không có thông tin)?")
DOC_SPLIT = re.compile(r"(\d+)\s*bản\s*(chính|sao)")
LEGAL = re.compile(r"\b\d{1,4}/\d{4}/[A-ZĐ0-9]+(?:-[A-ZĐ0-9]+)*")


def parse_channels(text):
    rows = []
    for m in CHANNEL.finditer(nfc(text)):
        fee = m.group(4) or ""
        amount = 0 if fee in ("", "Miễn phí", "Không có thông tin") else int(re.sub(r"[^\d]", "", fee) or 0)
        rows.append({"channel": m.group(1), "days": int(m.group(2)) if m.group(2) else None,
                     "fee": amount, "fee_known": fee not in ("", "Không có thông tin")})
    return rows


def parse_documents(text):
    text = re.sub(r"Tên giấy tờMẫu đơn, tờ khaiSố lượng", "\n", nfc(text))
    docs, last = [], 0
    for m in DOC_SPLIT.finditer(text):
        name = clean(re.sub(r"^[\s\-+*•]+", "", text[last:m.start()].split("\n")[-1]))
        # Drop attached form file names ("Mẫu số 02-PLIII-TTTM.docx") and table debris.
        name = re.sub(r"(Mẫu|Mau)[^.]*\.(docx?|pdf|xlsx?)", "", name).strip(" .:-;")
        last = m.end()
        if 15 <= len(name) <= 400 and name[0] not in ")(," and not name.endswith("(") and name[0].isupper():
            docs.append({"name": name, "copies": int(m.group(1))})
    return docs[:12]


def build_procedures(committees):
    folder = os.path.join(SHARED, "vn-admin-procedures-botuphap", "bo-tu-phap")
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        p = json.load(open(path, encoding="utf-8"))
        level_text = clean(p["cap_thuc_hien"])
        if "Cấp xã" in level_text:
            level, agencies = "COMMUNE", "EVERY_COMMUNE"
        elif "Cấp tỉnh" in level_text:
            level = "PROVINCE"
            handler = clean(p["co_quan_thuc_hien"])
            agencies = ["000.00.20.H29"] if "Thi hành án" in handler else ["000.00.04.H29"]
        else:
            continue  # ministry-level procedures are not handled in the city
        channels = parse_channels(p["cach_thuc_thuc_hien"])
        online = [c for c in channels if c["channel"] == "Trực tuyến"]
        if not online:
            continue  # the sandbox ships procedures citizens can start online
        main = online[0]
        days = main["days"] or 0
        # Full online service when nothing must be shown in person.
        in_person = "xuất trình" in nfc(p["thanh_phan_ho_so"]) or "Trực tiếp" in nfc(p["trinh_tu_thuc_hien"])[:200]
        fees = [{"description": f"Phí, lệ phí ({c['channel'].lower()})", "amount_vnd": c["fee"]}
                for c in channels if c["fee_known"]][:3]
        out.append({
            "national_code": p["ma_thu_tuc"], "procedure_code": f"{p['ma_thu_tuc']}.000.00.00.H29",
            "name": clean(p["ten_thu_tuc"]), "field": clean(p["linh_vuc"]), "level": level,
            "agencies": agencies, "processing_time": f"{days} ngày làm việc" if days else "Trong ngày làm việc",
            "processing_days": days, "fees": fees, "documents": parse_documents(p["thanh_phan_ho_so"]),
            "online_level": "PARTIAL" if in_person else "FULL", "decision_number": clean(p["so_quyet_dinh"]),
            "legal_bases": sorted(set(LEGAL.findall(nfc(p["can_cu_phap_ly"]))))[:8],
        })
    out.sort(key=lambda p: [int(x) for x in p["national_code"].split(".")])
    # Keep 150, spread over the catalogue, plus every procedure the demo dossiers use.
    wanted = {d["procedure"] for d in json.load(open(os.path.join(SOURCES, "dossiers.json"), encoding="utf-8"))}
    step = max(1, len(out) / 150)
    keep = {out[int(i * step)]["national_code"] for i in range(150) if int(i * step) < len(out)} | wanted
    out = [p for p in out if p["national_code"] in keep]
    write_json("procedures.json", out)
    return {p["national_code"]: p for p in out}


def build_people(procedures, committees):
    citizens = json.load(open(os.path.join(SOURCES, "citizens.json"), encoding="utf-8"))
    for c in citizens:
        c["full_name"] = nfc(c["full_name"])
        c["street"] = nfc(c["street"])
    handles = {c["handle"] for c in citizens}
    dossiers = []
    for d in json.load(open(os.path.join(SOURCES, "dossiers.json"), encoding="utf-8")):
        assert d["owner"] in handles and d["procedure"] in procedures, d
        agency = committees[d["agency"][5:]] if d["agency"].startswith("ward:") else d["agency"]
        y, m, day = d["submitted"].split("-")
        d = dict(d, agency=agency, code=f"{agency}-{y[2:]}{m}{day}-{d['seq']:04d}",
                 procedure_code=procedures[d["procedure"]]["procedure_code"])
        dossiers.append(d)
    write_json("citizens.json", citizens)
    write_json("dossiers.json", dossiers)


def main():
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(CORE_OUT, exist_ok=True)
    hcmc_wards = build_units()
    index, by_name = build_old_ward_index()
    stops = build_bus(index, by_name, hcmc_wards)
    known = sum(1 for s in stops if s["ward_code"])
    print(f"bus stops with a 2025 ward: {known}/{len(stops)}")
    nearest_ward = NearestWard(stops)
    build_cameras(nearest_ward)
    build_facilities(nearest_ward, hcmc_wards, stops)
    build_schools(nearest_ward)
    build_housing(nearest_ward)
    build_certificates()
    committees = build_agencies(nearest_ward, hcmc_wards)
    procedures = build_procedures(committees)
    build_people(procedures, committees)


if __name__ == "__main__":
    main()
