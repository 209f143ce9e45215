/// A churn schedule the stack declares: every `every`, `kill` live nodes are stopped as a
/// machine loss would stop them, kept down for `down`, then brought back by reconcile
/// (`ChurnSchedule` says it in full). `stratum chaos churn --stack S` runs it; its flags
/// override each setting. The plan shows it, and refuses one it could not run: a pool the
/// stack does not declare, nodes on a provider other than Local, more nodes a cycle than the
/// pool has. A stack declares at most one.
///
///     Churn(kill: 1, every: .seconds(120), down: .seconds(60), pool: "worker")
///     NodePool("worker", count: 4, command: ["train"], churn: Churn(kill: 1, every: .seconds(120), down: .seconds(60)))
public struct Churn: Declaration {
    public var schedule: ChurnSchedule
    public let location: SourceLocation

    public init(
        kill: Int = 1, every: Duration, down: Duration, cycles: Int? = nil, for duration: Duration? = nil, seed: UInt64? = nil, pool: String? = nil,
        fileID: String = #fileID, line: Int = #line
    ) {
        self.schedule = ChurnSchedule(kill: kill, every: every, down: down, cycles: cycles, for: duration, seed: seed, pool: pool)
        self.location = SourceLocation(file: fileID, line: line)
    }

    public func declare(into content: inout StackContent) {
        content.churn.append(ChurnDeclaration(schedule: schedule, location: location))
    }
}

/// A `Churn` as the stack body declared it (a pool's with the pool named).
public struct ChurnDeclaration: Sendable, Hashable {
    public var schedule: ChurnSchedule
    public var location: SourceLocation

    /// The schedule's problems against the stack's resources (`ChurnSchedule.problems(in:)`).
    func problems(resources: [DesiredResource]) -> [String] { schedule.problems(in: resources) }
}
