// Node.js driver clients for tests/integration/test_prepared_drivers.py.
//
//   node clients.js pg|postgres HOST PORT USER DB TAG FIRST_ID CLIENTS ITERATIONS
//
// The password comes from PGPASSWORD. Prints one JSON line per client id on stdout:
//   {"client": 7, "iterations": 30, "pids": [123, 456]}
// Any wrong result or unexpected error is printed on stderr and the exit status is 1.
//
// pg:       node-postgres, one Client per client id, every statement a *named* query. Every
//           client uses the same names ("mine", "shared", ...), and "mine" has a different text in
//           each client: a statement run on behalf of the wrong client returns the wrong id.
// postgres: postgres.js with its defaults (prepare: true, a pool of up to 10 connections per
//           instance). Each instance serves 3 client ids at once, so its statements are prepared
//           on several of its connections and run on whichever server each one gets.
'use strict'

const [driver, host, portText, user, database, tag, firstText, clientsText, iterText] =
  process.argv.slice(2)
if (!iterText || !['pg', 'postgres'].includes(driver)) {
  console.error('usage: node clients.js pg|postgres HOST PORT USER DB TAG FIRST_ID CLIENTS ' +
    'ITERATIONS')
  process.exit(2)
}
const port = Number(portText)
const firstId = Number(firstText)
const clients = Number(clientsText)
const iterations = Number(iterText)
const password = process.env.PGPASSWORD || ''

const SHARED = 'SELECT $1::int * 1000 + $2::int AS v, $3::text AS t'
const DIVIDE = 'SELECT 100 / $1::int AS q'
const INSERT = 'INSERT INTO prep_rows (driver, client, seq) VALUES ($1, $2, $3)'
const COUNT = 'SELECT count(*)::int AS n, max(seq) AS last, pg_backend_pid() AS pid' +
  ' FROM prep_rows WHERE driver = $1 AND client = $2'
const unique = (me) => `SELECT ${me}::int AS me, $1::int AS i, pg_backend_pid() AS pid`

function expect (ok, what) {
  if (!ok) throw new Error(what)
}

function one (rows, me, what) {
  expect(rows.length === 1, `client ${me}: ${what} returned ${rows.length} rows`)
  return rows[0]
}

// The workload, written once for both drivers. `q(name, text, values)` runs one prepared
// statement in autocommit; `tx(fn)` runs fn(q) inside BEGIN ... COMMIT on one connection.
async function workload (me, q, tx) {
  const pids = new Set()
  for (let i = 0; i < iterations; i++) {
    let r = one(await q('mine', unique(me), [i]), me, 'unique select')
    expect(r.me === me && r.i === i,
      `client ${me} iteration ${i}: unique select returned me=${r.me} i=${r.i}`)
    pids.add(r.pid)

    r = one(await q('shared', SHARED, [me, i, `${tag}-${me}`]), me, 'shared select')
    expect(r.v === me * 1000 + i && r.t === `${tag}-${me}`,
      `client ${me} iteration ${i}: shared select returned v=${r.v} t=${r.t}`)

    if (i % 7 === 3) {
      // An error from a prepared statement; the client carries on afterwards.
      let failed = null
      try {
        await q('divide', DIVIDE, [0])
      } catch (e) {
        failed = e
      }
      expect(failed && failed.code === '22012',
        `client ${me}: 100 / 0 gave ${failed ? failed.code + ' ' + failed.message : 'no error'}`)
    }

    await tx(async (tq) => {
      await tq('insert', INSERT, [tag, me, i])
      const c = one(await tq('count', COUNT, [tag, me]), me, 'count')
      expect(c.n === i + 1 && c.last === i,
        `client ${me} iteration ${i}: count returned n=${c.n} last=${c.last}`)
      const u = one(await tq('mine', unique(me), [i + 1000]), me, 'unique select (tx)')
      expect(u.me === me && u.i === i + 1000,
        `client ${me} iteration ${i}: unique select (tx) returned me=${u.me} i=${u.i}`)
      expect(c.pid === u.pid,
        `client ${me}: one transaction ran on two servers (${c.pid}, ${u.pid})`)
      pids.add(u.pid)
    })
  }
  return { client: me, iterations, pids: [...pids].sort((a, b) => a - b) }
}

async function runPg () {
  const { Client } = require('pg')
  const runClient = async (me) => {
    const client = new Client({
      host, port, user, database, password, connectionTimeoutMillis: 10000
    })
    await client.connect()
    try {
      const q = async (name, text, values) => {
        const res = await client.query({ name, text, values })
        // The driver really prepared it by name (it sends only Bind/Execute from now on).
        expect(client.connection.parsedStatements[name] === text,
          `client ${me}: node-postgres did not record "${name}" as prepared`)
        return res.rows
      }
      const tx = async (fn) => {
        await client.query('BEGIN')
        try {
          await fn(q)
          await client.query('COMMIT')
        } catch (e) {
          await client.query('ROLLBACK').catch(() => {})
          throw e
        }
      }
      return await workload(me, q, tx)
    } finally {
      await client.end()
    }
  }
  return Promise.allSettled([...Array(clients).keys()].map((c) => runClient(firstId + c)))
}

const LANES = 3 // client ids served concurrently by one postgres.js instance

async function runPostgresJs () {
  const postgres = require('postgres')
  const instances = Math.ceil(clients / LANES)
  const tasks = []
  const sqls = []
  for (let k = 0; k < instances; k++) {
    // Defaults, apart from where to connect, how long to wait and where notices go.
    const sql = postgres({
      host, port, user, database, pass: password, connect_timeout: 10, onnotice: () => {}
    })
    sqls.push(sql)
    for (let l = 0; l < LANES && k * LANES + l < clients; l++) {
      const me = firstId + k * LANES + l
      const exec = (s) => async (name, text, values) => {
        // The text goes in as a fragment of a tagged template, so the query uses the
        // instance's defaults (prepared, named by the driver); the values are parameters.
        const parts = text.split(/\$\d+/)
        parts.raw = parts
        const res = await s(parts, ...values)
        expect(res.statement && res.statement.name !== '',
          `client ${me}: postgres.js did not prepare "${name}"`)
        expect(res.statement.string === text, `client ${me}: postgres.js sent ` +
          `${JSON.stringify(res.statement.string)} for ${JSON.stringify(text)}`)
        return [...res]
      }
      const tx = (fn) => sql.begin((s) => fn(exec(s)))
      tasks.push(workload(me, exec(sql), tx))
    }
  }
  try {
    return await Promise.allSettled(tasks)
  } finally {
    await Promise.all(sqls.map((s) => s.end({ timeout: 5 })))
  }
}

async function main () {
  const results = driver === 'pg' ? await runPg() : await runPostgresJs()
  let failed = 0
  for (const r of results) {
    if (r.status === 'fulfilled') {
      console.log(JSON.stringify(r.value))
    } else {
      failed++
      const e = r.reason
      console.error(`${e && e.code ? '[' + e.code + '] ' : ''}${e && e.message ? e.message : e}`)
    }
  }
  process.exitCode = failed ? 1 : 0
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e)
  process.exitCode = 1
})
