// Validation of the fake's REST answers against GitHub's published OpenAPI description
// (@octokit/openapi, api.github.com): the schema of the operation and status, and no field
// the description does not declare (ferry must not come to depend on one GitHub never sends).
import { createRequire } from 'node:module';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';

const require = createRequire(import.meta.url);
const spec = require('@octokit/openapi/generated/api.github.com.json');

const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
addFormats(ajv);
ajv.addSchema(spec, 'gh');

const pointer = p => p.replace(/~/g, '~0').replace(/\//g, '~1');

function resolve(node) {
  while (node && node.$ref) {
    node = node.$ref.slice(2).split('/').map(s => s.replace(/~1/g, '/').replace(/~0/g, '~'))
      .reduce((n, k) => n[k], spec);
  }
  return node;
}

/** The operation of the description for a path template and a verb. */
export function operation(pathTemplate, verb) {
  const op = spec.paths[pathTemplate]?.[verb.toLowerCase()];
  if (!op) throw new Error(`no ${verb} ${pathTemplate} in GitHub's OpenAPI description`);
  return op;
}

/**
 * Asserts that a response (status, headers, JSON body) is one the description allows for the
 * operation; returns the list of problems (empty when it conforms).
 */
export function problems(pathTemplate, verb, res) {
  const op = operation(pathTemplate, verb);
  const declared = op.responses[String(res.status)];
  if (!declared) return [`status ${res.status} is not declared for ${verb} ${pathTemplate}`];
  const response = resolve(declared);
  const out = [];
  for (const [name, h] of Object.entries(response.headers || {})) {
    const header = resolve(h);
    if (header.required && !res.headers.get(name)) out.push(`header ${name} is required`);
  }
  const content = response.content?.['application/json'];
  if (!content) {
    if (res.body !== undefined) out.push(`a ${res.status} has no body in the description`);
    return out;
  }
  let schemaPath;
  if (declared.$ref) {
    schemaPath = `${declared.$ref}/content/application~1json/schema`;
  } else {
    schemaPath = `#/paths/${pointer(pathTemplate)}/${verb.toLowerCase()}/responses/${res.status}/content/application~1json/schema`;
  }
  const validate = ajv.getSchema(`gh${schemaPath}`) || ajv.compile({ $ref: `gh${schemaPath}` });
  if (!validate(res.body)) {
    out.push(...validate.errors.map(e => `${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`));
  }
  out.push(...undeclared(res.body, content.schema, ''));
  return out;
}

function undeclared(data, schema, at) {
  schema = resolve(schema);
  if (!schema || data === null || typeof data !== 'object') return [];
  const parts = [schema, ...(schema.allOf || []), ...(schema.anyOf || []), ...(schema.oneOf || [])].map(resolve);
  if (Array.isArray(data)) {
    const items = parts.map(p => p.items).find(Boolean);
    return items ? data.flatMap((d, i) => undeclared(d, items, `${at}/${i}`)) : [];
  }
  const props = Object.assign({}, ...parts.map(p => p.properties || {}));
  if (parts.some(p => p.additionalProperties) || Object.keys(props).length === 0) return [];
  return Object.entries(data).flatMap(([k, v]) =>
    k in props ? undeclared(v, props[k], `${at}/${k}`) : [`${at}/${k} is not declared by GitHub's description`]);
}
