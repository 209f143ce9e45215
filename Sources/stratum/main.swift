import StratumCLI
import StratumStacks

await StratumCLI.main(stacks: BundledStacks.all)
