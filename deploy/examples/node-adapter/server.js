#!/usr/bin/env node
// An example out-of-process Lienthong adapter, in Node.js with @grpc/grpc-js.
//
// It implements the adapter protocol (proto/lienthong/adapter/v1/adapter.proto)
// for one family, construction: housing projects (ListHousingProjects,
// GetHousingProject) and practicing certificates (GetPracticingCertificate),
// served from JSON files (by default the sandbox's). A province replaces the
// JSON with calls to its own systems.
//
//     npm ci                                   # @grpc/grpc-js, @grpc/proto-loader
//     node server.js --port 50071              # then point a `remote` adapter at it
//     cargo run -p lienthong-contract-tests -- --adapter remote --endpoint http://127.0.0.1:50071
//
// The protos are loaded at start (no generated code).
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const PROTOCOL_VERSION = '1.2';
const DEFAULT_SIZE = 20;
const MAX_SIZE = 100;
const STATUSES = { APPROVED: 1, UNDER_CONSTRUCTION: 2, SELLING: 3, COMPLETED: 4, SUSPENDED: 5 };
const CERTIFICATE = { VALID: 1, EXPIRED: 2, REVOKED: 3 };

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '50071' },
    'data-dir': { type: 'string', default: path.join(ROOT, 'adapters', 'sandbox', 'data') },
    province: { type: 'string', default: '79' },
  },
});

const definition = protoLoader.loadSync(path.join('lienthong', 'adapter', 'v1', 'adapter.proto'), {
  includeDirs: [path.join(ROOT, 'proto')],
  keepCase: true,
  longs: Number,
  enums: Number,
  defaults: true,
  oneofs: true,
});
const AdapterService = grpc.loadPackageDefinition(definition).lienthong.adapter.v1.AdapterService;

// google.rpc.Status and BadRequest, to name the field at fault in an
// INVALID_ARGUMENT as the adapter contract asks (grpc-status-details-bin).
const rpc = protobuf.Root.fromJSON({
  nested: {
    Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
    Status: {
      fields: {
        code: { type: 'int32', id: 1 },
        message: { type: 'string', id: 2 },
        details: { rule: 'repeated', type: 'Any', id: 3 },
      },
    },
    FieldViolation: { fields: { field: { type: 'string', id: 1 }, description: { type: 'string', id: 2 } } },
    BadRequest: { fields: { field_violations: { rule: 'repeated', type: 'FieldViolation', id: 1 } } },
  },
});

/** An INVALID_ARGUMENT naming `field`. */
function invalidField(field, message) {
  const badRequest = rpc.lookupType('BadRequest').encode({ field_violations: [{ field, description: message }] }).finish();
  const status = rpc
    .lookupType('Status')
    .encode({
      code: grpc.status.INVALID_ARGUMENT,
      message,
      details: [{ type_url: 'type.googleapis.com/google.rpc.BadRequest', value: badRequest }],
    })
    .finish();
  const metadata = new grpc.Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(status));
  return { code: grpc.status.INVALID_ARGUMENT, details: message, metadata };
}

/** Case- and diacritic-insensitive form: "Chợ Rẫy" -> "cho ray". */
function fold(text) {
  return (text || '').normalize('NFD').replace(/\p{M}/gu, '').replace(/[đĐ]/g, 'd').toLowerCase();
}

/** Binds page tokens to the request's filters. */
function fingerprint(request) {
  const { page_size: _size, page_token: _token, ...filters } = request;
  return crypto.createHash('sha256').update(JSON.stringify(filters)).digest('hex').slice(0, 16);
}

/** One page of `items` per page_size / page_token, or an error. */
function page(items, request) {
  if (request.page_size < 0) return { error: invalidField('page_size', 'page_size must not be negative') };
  const size = request.page_size === 0 ? DEFAULT_SIZE : Math.min(request.page_size, MAX_SIZE);
  let offset = 0;
  if (request.page_token) {
    const [fp, off] = request.page_token.split(':');
    if (fp !== fingerprint(request) || !/^\d+$/.test(off || '')) {
      return { error: invalidField('page_token', 'page_token was not issued for these filters') };
    }
    offset = Number(off);
  }
  const chunk = items.slice(offset, offset + size);
  const end = offset + chunk.length;
  return { chunk, token: end < items.length ? `${fingerprint(request)}:${end}` : '' };
}

/** Midnight in Vietnam (UTC+7) of a YYYY-MM-DD date, as a Timestamp. */
function localMidnight(date) {
  const [y, m, d] = date.split('-').map(Number);
  return { seconds: Date.UTC(y, m - 1, d) / 1000 - 7 * 3600, nanos: 0 };
}

function load(name) {
  return JSON.parse(fs.readFileSync(path.join(args['data-dir'], name), 'utf8'));
}

const projects = load('housing-projects.json')
  .map((r) => ({
    project_id: r.project_id,
    name: r.name,
    investor: r.investor,
    address: { street: r.street, ward_code: r.ward_code, province_code: args.province },
    location: { latitude: r.lat, longitude: r.lng },
    status: STATUSES[r.status] || 0,
    total_units: r.total_units,
    site_area_sqm: r.site_area_sqm,
    approval_decision: r.approval_decision,
    completion_date: r.completion_date
      ? (([year, month, day]) => ({ year, month, day }))(r.completion_date.split('-').map(Number))
      : null,
  }))
  .sort((a, b) => fold(a.name).localeCompare(fold(b.name)) || a.project_id.localeCompare(b.project_id));

// Certificate numbers are matched ignoring case and diacritics (MGBĐS/MGBDS).
const certificates = new Map(load('practicing-certificates.json').map((r) => [fold(r.certificate_number), r]));

const adapter = {
  GetCapabilities(_call, done) {
    done(null, {
      methods: [
        'lienthong.v1.ConstructionService/ListHousingProjects',
        'lienthong.v1.ConstructionService/GetHousingProject',
        'lienthong.v1.ConstructionService/GetPracticingCertificate',
      ],
      protocol_version: PROTOCOL_VERSION,
      adapter_name: 'lienthong-node-example',
      adapter_version: '0.1.0',
      provinces: [args.province],
    });
  },

  ListHousingProjects({ request }, done) {
    const text = fold(request.text.trim());
    const investor = fold(request.investor.trim());
    const found = projects.filter(
      (p) =>
        (!request.ward_code || p.address.ward_code === request.ward_code) &&
        (request.status === 0 || p.status === request.status) &&
        (!investor || fold(p.investor).includes(investor)) &&
        (!text || fold(`${p.name} ${p.address.street}`).includes(text)),
    );
    const { chunk, token, error } = page(found, request);
    if (error) return done(error);
    done(null, { projects: chunk, next_page_token: token, total_size: found.length });
  },

  GetHousingProject({ request }, done) {
    const p = projects.find((x) => x.project_id === request.project_id);
    if (!p) return done({ code: grpc.status.NOT_FOUND, details: 'no such housing project' });
    done(null, p);
  },

  GetPracticingCertificate({ request }, done) {
    const r = certificates.get(fold(request.certificate_number.trim()));
    if (!r) return done({ code: grpc.status.NOT_FOUND, details: 'no such practicing certificate' });
    const expiry = localMidnight(r.expiry_date);
    const status = r.revoked
      ? CERTIFICATE.REVOKED
      : expiry.seconds <= Date.now() / 1000
        ? CERTIFICATE.EXPIRED
        : CERTIFICATE.VALID;
    done(null, {
      certificate_number: r.certificate_number,
      holder_name: r.holder_name,
      issuing_authority: r.issuing_authority,
      issued_time: localMidnight(r.issued_date),
      expiry_time: expiry,
      status,
    });
  },
};

// Every other method of the protocol answers UNIMPLEMENTED, as for any
// method an adapter does not declare.
const unimplemented = {};
for (const name of Object.keys(AdapterService.service)) {
  const method = AdapterService.service[name];
  if (adapter[name]) continue;
  unimplemented[name] = method.responseStream
    ? (call) => call.destroy({ code: grpc.status.UNIMPLEMENTED, details: `${name} is not served here` })
    : (_call, done) => done({ code: grpc.status.UNIMPLEMENTED, details: `${name} is not served here` });
}

const server = new grpc.Server();
server.addService(AdapterService.service, { ...unimplemented, ...adapter });
server.bindAsync(`${args.host}:${args.port}`, grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) {
    console.error(`cannot listen on ${args.host}:${args.port}: ${error.message}`);
    process.exit(1);
  }
  console.log(`listening on ${args.host}:${port}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.tryShutdown(() => process.exit(0)));
}
