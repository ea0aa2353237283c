from ragops_trainer.app import main

main()
