import StratumCLI
import StratumStacks

await StratumCLI.main(stacks: BundledStacks.all, providers: [.local, .aws])
