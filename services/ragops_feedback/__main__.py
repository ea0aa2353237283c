from ragops_feedback.app import main

main()
