// PgJDBC clients for tests/integration/test_prepared_drivers.py.
//
// Runs CLIENTS concurrent connections (one thread each), every one with PgJDBC's defaults: after
// prepareThreshold (5) executions of the same SQL, the driver switches to a named server-side
// statement (S_1, S_2, ... per connection, so every client uses the same names for different SQL).
// Each client runs SQL unique to it (its id is a literal in the text) and SQL shared by all
// clients, in autocommit and inside explicit transactions, and checks every result it gets back.
//
// Run with the source launcher (no build step):
//   java -cp /usr/share/java/postgresql.jar PreparedClients.java \
//        HOST PORT USER DB TAG FIRST_ID CLIENTS ITERATIONS
// The password comes from the environment (PGPASSWORD). Prints one JSON line per client on stdout:
//   {"client": 7, "iterations": 30, "pids": [123, 456], "server_prepared": true}
// Any wrong result or unexpected error is printed on stderr and the exit status is 1.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import org.postgresql.PGStatement;

public class PreparedClients {
    static final String SHARED = "SELECT $1::int * 1000 + $2::int AS v, $3::text AS t";
    static final String DIVIDE = "SELECT 100 / $1::int AS q";
    static final String INSERT = "INSERT INTO prep_rows (driver, client, seq) VALUES ($1, $2, $3)";
    static final String COUNT =
        "SELECT count(*)::int AS n, max(seq) AS last, pg_backend_pid() AS pid"
        + " FROM prep_rows WHERE driver = $1 AND client = $2";

    static String unique(int me) {
        return "SELECT " + me + "::int AS me, $1::int AS i, pg_backend_pid() AS pid";
    }

    // JDBC placeholders are '?': the driver turns them into $n on the wire.
    static String jdbc(String sql) {
        return sql.replaceAll("\\$\\d+", "?");
    }

    static void expect(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static String run(String url, Properties props, String tag, int me, int iterations,
                      CyclicBarrier start) throws Exception {
        TreeSet<Integer> pids = new TreeSet<>();
        boolean serverPrepared;
        try (Connection conn = DriverManager.getConnection(url, props)) {
            start.await(30, TimeUnit.SECONDS);
            // Held for the whole run: the transaction statements are re-executed on whichever
            // server the client gets, long after the driver has named them.
            PreparedStatement insert = conn.prepareStatement(jdbc(INSERT));
            PreparedStatement count = conn.prepareStatement(jdbc(COUNT));
            PreparedStatement uniqueHeld = conn.prepareStatement(jdbc(unique(me)));
            for (int i = 0; i < iterations; i++) {
                // Autocommit, a fresh PreparedStatement each time (PgJDBC's statement cache
                // carries the execution count and the server-side name across them).
                try (PreparedStatement ps = conn.prepareStatement(jdbc(unique(me)))) {
                    ps.setInt(1, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        expect(rs.next(), "client " + me + ": unique select returned no row");
                        int gotMe = rs.getInt(1), gotI = rs.getInt(2);
                        expect(gotMe == me && gotI == i, "client " + me + " iteration " + i
                               + ": unique select returned me=" + gotMe + " i=" + gotI);
                        pids.add(rs.getInt(3));
                        expect(!rs.next(), "client " + me + ": unique select returned 2 rows");
                    }
                }
                try (PreparedStatement ps = conn.prepareStatement(jdbc(SHARED))) {
                    ps.setInt(1, me);
                    ps.setInt(2, i);
                    ps.setString(3, tag + "-" + me);
                    try (ResultSet rs = ps.executeQuery()) {
                        expect(rs.next(), "client " + me + ": shared select returned no row");
                        int v = rs.getInt(1);
                        String t = rs.getString(2);
                        expect(v == me * 1000 + i && t.equals(tag + "-" + me), "client " + me
                               + " iteration " + i + ": shared select returned v=" + v + " t=" + t);
                    }
                }
                if (i % 7 == 3) {
                    // An error from a prepared statement; the client carries on afterwards.
                    try (PreparedStatement ps = conn.prepareStatement(jdbc(DIVIDE))) {
                        ps.setInt(1, 0);
                        ps.executeQuery().close();
                        expect(false, "client " + me + ": 100 / 0 did not fail");
                    } catch (SQLException e) {
                        expect("22012".equals(e.getSQLState()), "client " + me + ": 100 / 0 failed"
                               + " with " + e.getSQLState() + ": " + e.getMessage());
                    }
                }
                // An explicit transaction: its statements all run on one server.
                conn.setAutoCommit(false);
                insert.setString(1, tag);
                insert.setInt(2, me);
                insert.setInt(3, i);
                expect(insert.executeUpdate() == 1,
                       "client " + me + ": insert did not insert 1 row");
                int pidA;
                count.setString(1, tag);
                count.setInt(2, me);
                try (ResultSet rs = count.executeQuery()) {
                    expect(rs.next(), "client " + me + ": count returned no row");
                    int n = rs.getInt(1), last = rs.getInt(2);
                    expect(n == i + 1 && last == i, "client " + me + " iteration " + i
                           + ": count returned n=" + n + " last=" + last);
                    pidA = rs.getInt(3);
                }
                uniqueHeld.setInt(1, i + 1000);
                try (ResultSet rs = uniqueHeld.executeQuery()) {
                    expect(rs.next(), "client " + me + ": unique select (tx) returned no row");
                    int gotMe = rs.getInt(1), gotI = rs.getInt(2), pidB = rs.getInt(3);
                    expect(gotMe == me && gotI == i + 1000, "client " + me + " iteration " + i
                           + ": unique select (tx) returned me=" + gotMe + " i=" + gotI);
                    expect(pidA == pidB, "client " + me + ": one transaction ran on two servers ("
                           + pidA + ", " + pidB + ")");
                    pids.add(pidB);
                }
                conn.commit();
                conn.setAutoCommit(true);
            }
            serverPrepared = uniqueHeld.unwrap(PGStatement.class).isUseServerPrepare()
                && insert.unwrap(PGStatement.class).isUseServerPrepare();
            insert.close();
            count.close();
            uniqueHeld.close();
        }
        StringBuilder sb = new StringBuilder();
        sb.append("{\"client\": ").append(me).append(", \"iterations\": ").append(iterations)
          .append(", \"pids\": [");
        String sep = "";
        for (int pid : pids) {
            sb.append(sep).append(pid);
            sep = ", ";
        }
        sb.append("], \"server_prepared\": ").append(serverPrepared).append("}");
        return sb.toString();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 8) {
            System.err.println(
                "usage: PreparedClients HOST PORT USER DB TAG FIRST_ID CLIENTS ITERATIONS");
            System.exit(2);
        }
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/" + args[3];
        Properties props = new Properties();
        props.setProperty("user", args[2]);
        props.setProperty("password", System.getenv().getOrDefault("PGPASSWORD", ""));
        props.setProperty("connectTimeout", "10");
        props.setProperty("socketTimeout", "60");
        props.setProperty("ApplicationName", "PreparedClients");
        String tag = args[4];
        int firstId = Integer.parseInt(args[5]);
        int clients = Integer.parseInt(args[6]);
        int iterations = Integer.parseInt(args[7]);

        CyclicBarrier start = new CyclicBarrier(clients);
        ConcurrentLinkedQueue<String> reports = new ConcurrentLinkedQueue<>();
        ConcurrentLinkedQueue<String> failures = new ConcurrentLinkedQueue<>();
        List<Thread> threads = new ArrayList<>();
        for (int c = 0; c < clients; c++) {
            final int me = firstId + c;
            Thread t = new Thread(() -> {
                try {
                    reports.add(run(url, props, tag, me, iterations, start));
                } catch (Throwable e) {
                    String state = e instanceof SQLException
                        ? " [" + ((SQLException) e).getSQLState() + "]" : "";
                    failures.add("client " + me + ": " + e + state);
                    start.reset();  // a client that failed to connect must not hold the others
                }
            });
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) {
            t.join();
        }
        for (String r : reports) {
            System.out.println(r);
        }
        for (String f : failures) {
            System.err.println(f);
        }
        System.exit(failures.isEmpty() ? 0 : 1);
    }
}
