from ragops_generation.app import main

main()
