import Foundation
import PostgresNIO
import StratumState

/// The PostgreSQL server could not be reached or dropped the connection: a condition that may
/// pass, unlike a `StateError` about the state itself. The engine's lock heartbeat retries on it
/// instead of treating the lease as lost.
public struct StateUnavailableError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Turns errors from the driver into `StateError`s that say what happened to the user's state and
/// what to do. PostgresNIO's own descriptions are deliberately opaque; the message here is built
/// from the server's SQLSTATE and text and from the redacted location, never from the password.
enum PostgresFailure {
    static func describe(_ error: any Error, at location: PostgresLocation, doing: String) -> any Error {
        switch error {
        case is StateError, is StateUnavailableError, is LockHeldError, is CancellationError:
            return error
        case let error as PSQLError:
            return describe(error, at: location, doing: doing)
        // The pool's own error type lives in a module this target does not import; it means the
        // request was cancelled, or no connection could be made for a while.
        case _ where String(describing: type(of: error)) == "ConnectionPoolError":
            if Task.isCancelled { return CancellationError() }
            return StateUnavailableError(
                "cannot reach the PostgreSQL server for \(location) (connections have kept failing); "
                    + "nothing was written. Check that the server is running and reachable, then run again")
        default:
            return StateError("cannot \(doing) \(location): \(error)")
        }
    }

    /// True when `error` means the connection itself is gone (closed, reset, ended by the server).
    static func isConnectionLoss(_ error: any Error) -> Bool {
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .connectionError:
            return true
        case .server:
            return ["57P01", "57P02", "57P03"].contains(error.serverInfo?[.sqlState] ?? "")
        default:
            return false
        }
    }

    private static func describe(_ error: PSQLError, at location: PostgresLocation, doing: String) -> any Error {
        if error.code == .server, let info = error.serverInfo {
            let state = info[.sqlState] ?? ""
            let message = info[.message] ?? "unknown server error"
            switch state {
            case "28P01", "28000":
                return StateError(
                    "PostgreSQL refused the credentials of user \(location.user) for \(location.redacted): \(message). "
                        + "Check the user and password in the state URL (or PGPASSWORD)")
            case "3D000":
                return StateError(
                    "the database \(location.database) does not exist on the server of \(location.redacted). "
                        + "Create it (createdb -O \(location.user) \(location.database)); see docs/state-postgres.md")
            case "42501":
                return StateError(
                    "user \(location.user) may not \(doing) \(location.redacted): \(message). "
                        + "Grant it CREATE on the database (or create the schema \(location.schema) for it); see docs/state-postgres.md")
            case "53300":
                return StateUnavailableError("the PostgreSQL server of \(location.redacted) has no free connection slots: \(message). Try again shortly")
            case "57P01", "57P02", "57P03":
                return StateUnavailableError("the PostgreSQL server of \(location.redacted) ended or refused the connection: \(message). Try again shortly")
            default:
                let hint = info[.detail].map { " (\($0))" } ?? ""
                return StateError("cannot \(doing) \(location.redacted): \(message)\(hint) [SQLSTATE \(state)]")
            }
        }
        switch error.code {
        case .connectionError:
            let cause = error.underlying.map { "\($0)" } ?? "connection failed"
            return StateUnavailableError(
                "cannot reach the PostgreSQL server for \(location.redacted): \(cause). "
                    + "Check the host and port in the state URL and that the server is running and accepts TCP connections")
        case .serverClosedConnection, .clientClosedConnection, .uncleanShutdown:
            return StateUnavailableError("the connection to \(location.redacted) closed while trying to \(doing); run again")
        case .sslUnsupported:
            return StateError("the PostgreSQL server of \(location.redacted) does not offer TLS but the state URL asks for it (sslmode=\(location.tls.rawValue))")
        case .failedToAddSSLHandler:
            return StateError("cannot set up TLS to \(location.redacted): check sslmode and sslrootcert in the state URL")
        case .authMechanismRequiresPassword:
            return StateError("the PostgreSQL server of \(location.redacted) asks for a password: add it to the state URL or set PGPASSWORD")
        case .unsupportedAuthMechanism, .saslError:
            return StateError("cannot authenticate user \(location.user) to \(location.redacted) (\(error.code)): check the password and the server's pg_hba.conf")
        default:
            return StateError("cannot \(doing) \(location.redacted): PostgreSQL client error \(error.code)")
        }
    }
}
