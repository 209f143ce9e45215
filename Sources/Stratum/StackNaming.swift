/// Names that must be unique across a cloud (buckets, AWS placement groups) carry this suffix
/// while a stack is evaluated for an ephemeral environment (`stratum up --env NAME`: `-NAME`),
/// so copies of one stack never collide. Empty otherwise.
public enum StackNaming {
    @TaskLocal public static var suffix = ""
}
