import StratumAWS
import StratumAzure
import StratumCLI
import StratumGCP
import StratumStacks

// The clouds this binary carries; each is a library product listed in Package.swift.
await StratumCLI.main(stacks: BundledStacks.all, providers: [.local, .aws, .gcp, .azure])
