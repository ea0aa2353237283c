from ragops_evaluation.app import main

main()
