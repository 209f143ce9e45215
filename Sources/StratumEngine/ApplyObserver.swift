import Foundation
import StratumCore

/// What the executor did to one resource.
public enum StepOutcome: Sendable {
    case succeeded(ResourceState?)
    case failed(any Error)
    /// Not attempted because something it waits for failed.
    case skipped(because: ResourceAddress)
}

/// Receives progress from the executor as it happens (the CLI prints it).
public protocol ApplyObserver: Sendable {
    func stepStarted(_ step: ExecutionStep)
    func stepFinished(_ step: ExecutionStep, outcome: StepOutcome, elapsed: Duration)
}

/// An observer that ignores everything.
public struct SilentObserver: ApplyObserver {
    public init() {}
    public func stepStarted(_ step: ExecutionStep) {}
    public func stepFinished(_ step: ExecutionStep, outcome: StepOutcome, elapsed: Duration) {}
}

/// One provider operation the executor runs: a change is one step, or two for a replace.
public struct ExecutionStep: Sendable, Hashable {
    public enum Kind: String, Sendable {
        case create, update, delete
        /// The create half of a replace.
        case replaceCreate
        /// The delete half of a replace.
        case replaceDelete

        /// Whether the step creates a resource (a create, or the create half of a replace).
        public var creates: Bool { self == .create || self == .replaceCreate }
    }

    public var address: ResourceAddress
    public var kind: Kind

    public var verb: String {
        switch kind {
        case .create, .replaceCreate: return "Creating"
        case .update: return "Modifying"
        case .delete, .replaceDelete: return "Destroying"
        }
    }

    public var pastTense: String {
        switch kind {
        case .create, .replaceCreate: return "Creation"
        case .update: return "Modifications"
        case .delete, .replaceDelete: return "Destruction"
        }
    }
}

/// How an apply ended.
public struct ApplyResult: Sendable {
    public var succeeded: [ExecutionStep] = []
    public var failed: [(step: ExecutionStep, error: any Error)] = []
    public var skipped: [(step: ExecutionStep, cause: ResourceAddress)] = []
    /// Steps never started because the run stopped early (`stopped`, or `exhaustion` for creates).
    public var notStarted: [ExecutionStep] = []
    /// Creates kept failing for lack of capacity or quota, so no further create was started.
    public var exhaustion: Exhaustion?
    /// The run was asked to stop (an interrupt): steps in flight finished, no new one started.
    public var stopped = false
    /// The state serial after the last commit.
    public var serial: Int = 0
    /// Gangs that could not land whole, and what was released of them.
    public var gangFailures: [GangFailure] = []
    /// How each race ended: the gang that landed whole first, and what the others released.
    public var races: [RaceOutcome] = []

    public struct RaceOutcome: Sendable {
        public var cluster: String
        /// The gang that landed whole first; nil when none did.
        public var winner: String?
        /// Members of the other gangs deleted after the winner landed.
        public var released: [ResourceAddress]
        public var unreleased: [(address: ResourceAddress, error: any Error)]
    }

    public init() {}

    public var ok: Bool { failed.isEmpty && skipped.isEmpty && notStarted.isEmpty }

    /// A gang a member of which could not be created for lack of capacity or quota: its other
    /// members were not started, and those that existed were deleted (journaled, like any delete).
    public struct GangFailure: Sendable {
        public var gang: String
        /// The capacity or quota error that broke it.
        public var error: ProviderError
        /// Members deleted to release the gang.
        public var released: [ResourceAddress]
        /// Members whose delete failed: still in state, so a later run deletes them.
        public var unreleased: [(address: ResourceAddress, error: any Error)]
    }

    /// Several creates in a row failed with the same resource-exhaustion error.
    public struct Exhaustion: Sendable, CustomStringConvertible {
        /// `.capacity` or `.quota`.
        public var kind: ProviderError.Kind
        /// How many creates in a row failed with it.
        public var failures: Int
        /// The last of those errors, as the provider put it.
        public var lastError: String

        public var description: String {
            let what = kind == .quota ? "an account quota is used up" : "the provider has no capacity left"
            return "\(failures) creates in a row failed because \(what) (last: \(lastError))"
        }
    }

    public var counts: (added: Int, changed: Int, destroyed: Int) {
        var added = 0, changed = 0, destroyed = 0
        for step in succeeded {
            switch step.kind {
            case .create, .replaceCreate: added += 1
            case .update: changed += 1
            case .delete, .replaceDelete: destroyed += 1
            }
        }
        return (added, changed, destroyed)
    }
}
